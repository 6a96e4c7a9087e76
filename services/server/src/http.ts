// The HTTP server: tRPC at /trpc, Prometheus at /metrics, the Studio panel (when built) at /.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { existsSync, createReadStream, statSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { extname, join, resolve, sep } from 'node:path';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { guardRequest, hostPolicy, isApiPath, SECURITY_HEADERS, type HostPolicy } from './http-guard';
import { subscriptionClientKey } from './live';
import { checkRequestCost } from './request-cost';
import { appRouter, configureSubscriptions } from './router';
import { handleDatasetUpload, UPLOAD_DATASET_PATH } from './upload';
import type { Metrics } from './metrics';
import type { Actor, TrainyardService } from './service';

const USER_RE = /^[A-Za-z0-9._@-]{1,100}$/;
const CORRELATION_RE = /^[A-Za-z0-9._:-]{1,100}$/;
const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
};

export function createApiServer(service: TrainyardService, metrics: Metrics, panelDir?: string): Server {
  configureSubscriptions({ maxDurationMs: service.config.subscriptionMaxMs });
  const trpc = createHTTPHandler({
    router: appRouter,
    basePath: '/trpc/',
    maxBodySize: 1_000_000,
    maxBatchSize: 50,
    createContext: async ({ req, info }) => {
      // A batch of expensive calls is refused as a whole before any of them runs.
      await checkRequestCost(info.calls);
      return { service, actor: requestActor(req), client: subscriptionClientKey(req) };
    },
    // Unexpected errors are logged by the router's error formatter, with the correlation id the
    // client is given.
  });
  const panel = panelDir && existsSync(join(panelDir, 'index.html')) ? resolve(panelDir) : null;
  // Known once the server listens (the port may be 0 until then).
  let policy: HostPolicy | null = null;
  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    try {
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
      const refusal = guardRequest(policy ?? listeningPolicy(server, service), req);
      if (refusal) {
        res.writeHead(refusal.status, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' }).end(refusal.message);
        return;
      }
      if (isApiPath(url)) return void trpc(req, res);
      if (url === UPLOAD_DATASET_PATH || url.startsWith(`${UPLOAD_DATASET_PATH}?`))
        return handleDatasetUpload(req, res, { uploadsDir: service.config.uploadsDir, maxBytes: service.config.uploadMaxBytes });
      if (url === '/metrics' && req.method === 'GET') return void serveMetrics(metrics, res);
      if (panel && (req.method === 'GET' || req.method === 'HEAD')) return servePanel(panel, url, res);
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the API is at /trpc, metrics at /metrics\n');
    } catch (err) {
      service.log.error(`http: ${(err as Error).message}`);
      if (!res.headersSent) res.writeHead(500).end();
    }
  });
  server.on('listening', () => {
    policy = listeningPolicy(server, service);
  });
  return server;
}

/** The names the service answers to, for the address it actually listens on. */
function listeningPolicy(server: Server, service: TrainyardService): HostPolicy {
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : service.config.port;
  const localAddresses = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
  return hostPolicy({ port, bindHost: service.config.host, allowedHosts: service.config.allowedHosts, localAddresses });
}

/**
 * Who is calling. Local mode has one implicit operator, trusted with the service's internals
 * (paths, host, database user): admin. Tenancy decides this per authenticated user instead.
 */
export function requestActor(req: IncomingMessage): Actor {
  const user = header(req, 'x-trainyard-user');
  const correlationId = header(req, 'x-correlation-id');
  return {
    user: user && USER_RE.test(user) ? user : 'local',
    correlationId: correlationId && CORRELATION_RE.test(correlationId) ? correlationId : undefined,
    admin: true,
  };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

async function serveMetrics(metrics: Metrics, res: ServerResponse): Promise<void> {
  try {
    const body = await metrics.registry.metrics();
    res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body);
  } catch (err) {
    res.writeHead(503, { 'content-type': 'text/plain' }).end(`metrics unavailable: ${(err as Error).message}\n`);
  }
}

function servePanel(root: string, url: string, res: ServerResponse): void {
  let path: string;
  try {
    path = decodeURIComponent(new URL(url, 'http://x').pathname);
  } catch {
    res.writeHead(400).end();
    return;
  }
  let file = resolve(root, '.' + path);
  // No path escapes: anything outside the panel's folder, or not a file, gets the app shell.
  if (!(file === root || file.startsWith(root + sep)) || !existsSync(file) || !statSync(file).isFile()) {
    file = join(root, 'index.html');
  }
  const immutable = file.includes(`${sep}assets${sep}`);
  res.writeHead(200, {
    'content-type': MIME[extname(file)] ?? 'application/octet-stream',
    'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
  });
  createReadStream(file).pipe(res);
}
