// The HTTP server: tRPC at /trpc, SAGE Studio's REST routes at /api (studio/), OpenAI's
// fine-tuning API at /v1 (openai/), Prometheus at /metrics, the Studio panel (when built) at /.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { existsSync, createReadStream, statSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { extname, join, resolve, sep } from 'node:path';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { createAuthenticator, isRefusal, refuse, trpcActor, type Authenticate, type AuthRefusal } from './auth';
import { guardRequest, hostPolicy, isApiPath, SECURITY_HEADERS, type HostPolicy } from './http-guard';
import { subscriptionClientKey } from './live';
import { checkRequestCost } from './request-cost';
import { appRouter, configureSubscriptions } from './router';
import { createOpenAiApi, errorBody, isOpenAiPath, refuseCaller } from './openai';
import { createRestApi, isStudioPath } from './studio';
import type { Metrics } from './metrics';
import type { Actor, TrainyardService } from './service';
import { errorText } from './log';

const JSON_TYPE = 'application/json; charset=utf-8';
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
  const authenticate = createAuthenticator({ mode: service.config.auth, db: service.database.db });
  const trpc = createHTTPHandler({
    router: appRouter,
    basePath: '/trpc/',
    maxBodySize: 1_000_000,
    maxBatchSize: 50,
    createContext: async ({ req, info }) => {
      // A caller without a valid token (tokens mode) gets UNAUTHORIZED for every call, and none
      // runs; a batch of expensive calls is refused as a whole before any of them runs.
      const actor = await trpcActor(authenticate, req);
      await checkRequestCost(info.calls);
      return { service, actor, client: subscriptionClientKey(req) };
    },
    // Unexpected errors are logged by the router's error formatter, with the correlation id the
    // client is given.
  });
  const rest = createRestApi(service);
  const openai = createOpenAiApi(service);
  const panel = panelDir && existsSync(join(panelDir, 'index.html')) ? resolve(panelDir) : null;
  // Known once the server listens (the port may be 0 until then).
  let policy: HostPolicy | null = null;
  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    try {
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
      const refusal = guardRequest(policy ?? listeningPolicy(server, service), req);
      if (refusal) {
        // The REST API's clients read { detail } (FastAPI's error shape); OpenAI's read { error }.
        const body = isStudioPath(url)
          ? JSON.stringify({ detail: refusal.message.trim() })
          : isOpenAiPath(url)
            ? JSON.stringify(errorBody(refusal.status, refusal.message.trim()))
            : null;
        res
          .writeHead(refusal.status, { 'content-type': body ? JSON_TYPE : 'text/plain; charset=utf-8', connection: 'close' })
          .end(body ?? refusal.message);
        return;
      }
      if (isApiPath(url)) return void trpc(req, res);
      if (isStudioPath(url) || isOpenAiPath(url)) {
        const [route, refusal] = isStudioPath(url) ? [rest, refuse] : [openai, refuseCaller];
        return void withCaller(authenticate, req, res, (actor) => route(req, res, actor), refusal).catch((err: Error) => {
          service.log.error(`http: ${err.stack ?? err.message}`);
          if (!res.headersSent) res.writeHead(500).end();
        });
      }
      if (url === '/metrics' && req.method === 'GET') return void serveMetrics(metrics, res);
      if (panel && (req.method === 'GET' || req.method === 'HEAD')) return servePanel(panel, url, res);
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the API is at /trpc, metrics at /metrics\n');
    } catch (err) {
      service.log.error(`http: ${errorText(err)}`);
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
 * Hands a REST request to `route` with its caller, or answers 401 (no valid token, in tokens
 * mode) or 503 (the token could not be checked) in that API's error shape without doing anything.
 */
async function withCaller(
  authenticate: Authenticate,
  req: IncomingMessage,
  res: ServerResponse,
  route: (actor: Actor) => Promise<void> | void,
  refusal: (req: IncomingMessage, res: ServerResponse, refusal: AuthRefusal) => void,
): Promise<void> {
  const caller = await authenticate(req);
  if (!isRefusal(caller)) return route(caller);
  refusal(req, res, caller);
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
