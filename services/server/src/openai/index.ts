// The OpenAI-compatible fine-tuning API as http.ts mounts it: every path under /v1, errors in
// OpenAI's shape (an unknown path too, as OpenAI answers one).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Actor, TrainyardService } from '../service';
import { answerError, sendError } from './errors';
import { createOpenAiRoutes } from './routes';

export { errorBody, refuseCaller } from './errors';

/** Paths this API answers (all of /v1, so that an unknown one is an OpenAI-shaped 404). */
export const isOpenAiPath = (url: string): boolean => url === '/v1' || url.startsWith('/v1/') || url.startsWith('/v1?');

export function createOpenAiApi(service: TrainyardService) {
  const matchers = createOpenAiRoutes(service).map((route) => ({
    route,
    re: new RegExp(`^${route.path.replace(/\{([a-z_]+)\}/g, '(?<$1>[^/]+)')}$`),
  }));

  /** Answers a request under /v1; never rejects (an unexpected error is a 500). */
  return async (req: IncomingMessage, res: ServerResponse, actor: Actor): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://service');
    const method = (req.method ?? 'GET').toUpperCase();
    const hits = matchers.map((m) => ({ ...m, match: m.re.exec(url.pathname) })).filter((m) => m.match);
    const shown = url.pathname.slice(0, 200);
    if (!hits.length) return sendError(res, 404, `Invalid URL (${method} ${shown})`, { code: 'unknown_url' });
    const hit = hits.find((h) => h.route.method === method);
    if (!hit) {
      const allow = hits.map((h) => h.route.method).join(', ');
      return sendError(res, 405, `Method Not Allowed: ${shown} takes ${allow}`, { code: 'method_not_allowed', headers: { allow } });
    }
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries(hit.match!.groups ?? {})) {
      try {
        params[k] = decodeURIComponent(v);
      } catch {
        return sendError(res, 400, `${k} is not valid percent-encoding`, { param: k, code: 'invalid_value' });
      }
    }
    try {
      await hit.route.handle({ req, res, params, query: url.searchParams, actor });
    } catch (err) {
      answerError(res, err, service, actor);
    }
  };
}
