// The REST API as http.ts mounts it: Studio's routes under /api and their OpenAPI document.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Actor, TrainyardService } from '../service';
import { openApiDocument } from './openapi';
import { createStudioApi, OPENAPI_PATH, sendDetail } from './routes';

export { isStudioPath } from './routes';

export function createRestApi(service: TrainyardService) {
  const api = createStudioApi(service);
  const document = JSON.stringify(openApiDocument(api.routes, service.config.version));
  /** Answers a request to a REST path; never rejects (an unexpected error is a 500). */
  return async (req: IncomingMessage, res: ServerResponse, actor: Actor): Promise<void> => {
    try {
      if ((req.url ?? '/').split('?', 1)[0] !== OPENAPI_PATH) return await api.handle(req, res, actor);
      if (req.method !== 'GET') return sendDetail(res, 405, `Method Not Allowed: ${OPENAPI_PATH} takes GET`, undefined, { allow: 'GET' });
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-cache' }).end(document);
    } catch (err) {
      service.log.error(`REST API: ${(err as Error)?.stack ?? String(err)}`);
      if (res.headersSent) res.destroy();
      else sendDetail(res, 500, 'internal error; the server log has the details');
    }
  };
}
