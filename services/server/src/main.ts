// `npm start`: the Trainyard service (API, metrics and, once built, the Studio panel).
import { loadTasks } from '@trainyard/store';
import { loadConfig } from './config';
import { createApiServer } from './http';
import { errorText, log } from './log';
import { METRIC_EVENTS, Metrics } from './metrics';
import { TrainyardService } from './service';
import { WebhookDispatcher } from './webhooks/dispatcher';

/**
 * A shutdown that has not finished by then (a stuck close) ends the process anyway, as a crash
 * would (which the service recovers from); under the 10 s supervisors commonly allow (docker stop).
 */
const SHUTDOWN_DEADLINE_MS = 8000;

/** The event types Metrics.observe looks at. */
async function main() {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    log.error(errorText(err));
    process.exit(2);
  }
  const service = await TrainyardService.start(config).catch((err: Error) => {
    log.error(`cannot start: ${errorText(err)}`);
    process.exit(1);
  });
  const metrics = new Metrics(service);
  service.feed.onEvents((events) => {
    // Only starts, ends and preemptions feed the histograms: no task read for the rest (e.g. every submission).
    const observed = events.filter((e) => METRIC_EVENTS.has(e.type));
    if (!observed.length) return;
    const ids = [...new Set(observed.map((e) => e.streamId))];
    loadTasks(service.database.db, ids)
      .then((tasks) => metrics.observe(observed, tasks))
      .catch(() => {});
  });
  // Task endings to the webhooks users and admins registered (webhooks.create).
  const webhooks = new WebhookDispatcher(
    service.database.db,
    service.feed,
    {
      ...config.webhooks,
      tickMs: Math.min(1000, config.webhooks.baseDelayMs),
      version: config.version,
      restrictNonAdmin: config.auth === 'tokens',
    },
    log,
  );
  await webhooks.start().catch((err: Error) => log.error(`webhooks: cannot start: ${errorText(err)}; no deliveries until a restart`));
  const server = createApiServer(service, metrics, config.panelDir);
  server.on('error', (err: NodeJS.ErrnoException) => {
    log.error(
      `cannot listen on ${config.host}:${config.port}: ${err.code === 'EADDRINUSE' ? 'the port is in use; set PORT to another one' : err.message}`,
    );
    process.exit(1);
  });
  server.listen(config.port, config.host, () => {
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : config.port;
    const gpu = service.deviceBlocks();
    log.info(
      `listening on http://${config.host}:${port} (API /trpc, metrics /metrics); ` +
        `storage ${service.database.kind} at ${service.database.location}; trainer ${JSON.stringify(config.trainer)}` +
        `; devices ${service
          .devices()
          .devices.map((d) => d.id)
          .join(', ')}` +
        (gpu.size ? `; ${gpu.size} device(s) blocked by other GPU programs` : ''),
    );
    // A machine-readable line for tools and tests that start the server on port 0.
    log.line(JSON.stringify({ trainyard: 'listening', port, pid: process.pid }));
  });
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) {
      // A second signal: the operator wants it gone now.
      process.exit(1);
    }
    stopping = true;
    setTimeout(() => {
      log.error(`${signal}: shutdown did not finish in ${SHUTDOWN_DEADLINE_MS} ms; exiting anyway`);
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS).unref();
    // Log writes never wait (a dead pipe drops them), so nothing here can hang on stdout.
    log.info(`${signal}: shutting down; running trainers keep going and are re-attached at the next start`);
    server.close();
    server.closeAllConnections();
    await webhooks.close().catch(() => {});
    await service.close().catch(() => {});
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  // The server must never die on a stray error from one request or one trainer. The logger
  // never throws and drops what a broken stream cannot take, so these cannot loop.
  process.on('unhandledRejection', (err) => log.error('unhandled rejection:', err));
  process.on('uncaughtException', (err) => log.error('uncaught exception:', err));
}

void main();
