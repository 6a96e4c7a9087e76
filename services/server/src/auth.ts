// Who is calling. Local mode (TRAINYARD_AUTH=local, the default, loopback only): one implicit
// operator, trusted with everything. Tokens mode: the user a bearer token belongs to, looked up
// by the token's hash on every request (a revocation holds from the next request on). http.ts asks
// here before any procedure or REST route runs; a refusal runs nothing.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TRPCError } from '@trpc/server';
import { findTokenHolder, isConnectionError, USER_NAME_RE, type Db } from '@trainyard/store';
import { normaliseHost } from './http-guard';
import type { Actor } from './service';

export const AUTH_MODES = ['local', 'tokens'] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

const CORRELATION_RE = /^[A-Za-z0-9._:-]{1,100}$/;

/** Whether the service bound to `host` can be reached only from this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = normaliseHost(host)?.host;
  if (!h) return false;
  return h === 'localhost' || h === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(h) || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(h);
}

/** The token of an `Authorization: Bearer <token>` header; null when there is none of that form. */
export function bearerToken(header: string | undefined): string | null {
  const m = header === undefined ? null : /^Bearer +([^\s]+) *$/i.exec(header);
  return m ? m[1]! : null;
}

const TOKEN_REQUIRED =
  'this service requires a token (TRAINYARD_AUTH=tokens): send the header "Authorization: Bearer <token>" ' +
  '(the CLI takes --token or TRAINYARD_TOKEN; the panel asks for one). An admin creates tokens on the ' +
  "service's machine with `trainyard admin token create --user NAME`.";
const TOKEN_REFUSED =
  'the token was refused: it is unknown, has expired or was revoked. Ask an admin for a new one ' +
  "(`trainyard admin token create --user NAME` on the service's machine).";

/** Why a request was not let in (401), or that the database could not be asked (503). */
export interface AuthRefusal {
  status: 401 | 503;
  message: string;
}

export type Authenticate = (req: IncomingMessage) => Promise<Actor | AuthRefusal>;

export const isRefusal = (a: Actor | AuthRefusal): a is AuthRefusal => 'status' in a;

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function correlationIdOf(req: IncomingMessage): string | undefined {
  const id = header(req, 'x-correlation-id');
  return id && CORRELATION_RE.test(id) ? id : undefined;
}

/**
 * Local mode's caller: the one operator, trusted with the service's internals (paths, host,
 * database user): an admin. `x-trainyard-user` only names them in the audit log.
 */
function localActor(req: IncomingMessage): Actor {
  const user = header(req, 'x-trainyard-user');
  return { user: user && USER_NAME_RE.test(user) ? user : 'local', correlationId: correlationIdOf(req), admin: true, token: null };
}

export function createAuthenticator(o: { mode: AuthMode; db: Db; now?: () => Date }): Authenticate {
  const now = o.now ?? (() => new Date());
  if (o.mode === 'local') return (req) => Promise.resolve(localActor(req));
  return async (req) => {
    const raw = header(req, 'authorization');
    if (raw === undefined) return { status: 401, message: TOKEN_REQUIRED };
    const token = bearerToken(raw);
    if (token === null) return { status: 401, message: `the Authorization header is not "Bearer <token>"; ${TOKEN_REQUIRED}` };
    let holder;
    try {
      holder = await findTokenHolder(o.db, token, now());
    } catch (err) {
      if (isConnectionError(err))
        return { status: 503, message: 'the database is unreachable right now, so the token cannot be checked; try again shortly' };
      throw err;
    }
    if (!holder) return { status: 401, message: TOKEN_REFUSED };
    // The header naming a user is ignored: the token says who this is.
    return {
      user: holder.user,
      admin: holder.admin,
      correlationId: correlationIdOf(req),
      token: { id: holder.tokenId, expiresAt: holder.expiresAt },
    };
  };
}

/** A refused request's body is read and dropped up to this much (past it, the connection is cut). */
const DROP_BODY_MAX = 1_000_000;

/**
 * Answers a refused REST request ({ detail }, as its routes answer errors). What the client still
 * sends is read and dropped, up to DROP_BODY_MAX, so that it gets this answer rather than a reset
 * connection halfway through writing its body; an upload larger than that is cut off.
 */
export function refuse(req: IncomingMessage, res: ServerResponse, refusal: AuthRefusal): void {
  let dropped = 0;
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > DROP_BODY_MAX) req.destroy();
  });
  req.resume();
  res
    .writeHead(refusal.status, {
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'no-store',
      ...(refusal.status === 401 ? { 'www-authenticate': 'Bearer realm="trainyard"' } : {}),
    })
    .end(JSON.stringify({ detail: refusal.message }));
}

/** The caller of a tRPC request, or the error every call in it answers with (none of them runs). */
export async function trpcActor(authenticate: Authenticate, req: IncomingMessage): Promise<Actor> {
  const a = await authenticate(req);
  if (!isRefusal(a)) return a;
  throw new TRPCError({ code: a.status === 401 ? 'UNAUTHORIZED' : 'SERVICE_UNAVAILABLE', message: a.message });
}
