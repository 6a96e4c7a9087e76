// OpenAI's error shape, `{ error: { message, type, param, code } }`, with the status OpenAI uses,
// and what the service's errors become in it. The official SDKs retry 409, 429 and 5xx answers
// unless told not to (`x-should-retry: false`): a refusal that a retry cannot change says so.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { IllegalCommandError, TaskNotFoundError } from '@trainyard/domain';
import { ConcurrencyError, databaseErrorMessage, isConnectionError } from '@trainyard/store';
import type { AuthRefusal } from '../auth';
import { FieldError, type Actor, type TrainyardService } from '../service';
import { jobId, paramOf } from './objects';

export interface ErrorDetail {
  type?: string;
  param?: string | null;
  code?: string | null;
  /** Whether a client may retry (default: only 409 from a lost race, 429 and 5xx other than 501). */
  retry?: boolean;
  headers?: Record<string, string>;
}

/** A refusal with OpenAI's status and fields. */
export class OpenAiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly detail: ErrorDetail = {},
  ) {
    super(message);
    this.name = 'OpenAiError';
  }
}

const typeOf = (status: number): string =>
  status === 401
    ? 'invalid_request_error'
    : status === 429
      ? 'rate_limit_error'
      : status >= 500 && status !== 501
        ? 'server_error'
        : 'invalid_request_error';

/** The body of an error answer. */
export function errorBody(status: number, message: string, detail: ErrorDetail = {}) {
  return { error: { message, type: detail.type ?? typeOf(status), param: detail.param ?? null, code: detail.code ?? null } };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  res
    .writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers })
    .end(JSON.stringify(body));
}

export function sendError(res: ServerResponse, status: number, message: string, detail: ErrorDetail = {}): void {
  const retry = detail.retry ?? (status === 429 || (status >= 500 && status !== 501));
  sendJson(res, status, errorBody(status, message, detail), { ...(retry ? {} : { 'x-should-retry': 'false' }), ...detail.headers });
}

/** A request without a valid token (tokens mode): 401 in OpenAI's shape; its body is read and dropped. */
export function refuseCaller(req: IncomingMessage, res: ServerResponse, refusal: AuthRefusal): void {
  let dropped = 0;
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    // As auth.ts's refuse: past this, the connection is cut rather than read to its end.
    if (dropped > 1_000_000) req.destroy();
  });
  req.resume();
  sendError(res, refusal.status, refusal.message, {
    code: refusal.status === 401 ? 'invalid_api_key' : null,
    headers: refusal.status === 401 ? { 'www-authenticate': 'Bearer realm="trainyard"' } : {},
  });
}

/** The answer for an error a route threw: the service's and the store's errors in OpenAI's shape. */
export function answerError(res: ServerResponse, err: unknown, service: TrainyardService, actor: Actor): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (err instanceof OpenAiError) return sendError(res, err.status, err.message, err.detail);
  if (err instanceof FieldError) {
    const param = paramOf(err.field);
    return sendError(res, 400, `${param ?? err.field}: ${err.message}`, { param, code: 'invalid_value' });
  }
  if (err instanceof TaskNotFoundError)
    return sendError(res, 404, `No fine-tuning job found with id ${jobId(err.taskId)}`, { code: 'not_found' });
  if (err instanceof IllegalCommandError) return sendError(res, 409, err.message, { code: 'invalid_state' });
  if (err instanceof ConcurrencyError) return sendError(res, 409, `${err.message}; please retry`, { code: 'conflict', retry: true });
  if (isConnectionError(err))
    return sendError(
      res,
      503,
      `the database is unreachable right now (${databaseErrorMessage(err)}); the service keeps retrying, try again shortly`,
    );
  const correlationId = actor.correlationId ?? randomUUID();
  service.log.error(`internal error (correlation id ${correlationId}) in the OpenAI API: ${(err as Error)?.stack ?? String(err)}`);
  sendError(res, 500, `internal error (correlation id ${correlationId}); the server log has the details`);
}
