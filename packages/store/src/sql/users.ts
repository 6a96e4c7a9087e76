// Statements on users and their bearer tokens (tokens mode): add and list users; create, list
// and revoke tokens; and the one read every authenticated request makes, a token's user by
// the token's hash. What a name or a token may be is auth.ts's.
import { and, asc, eq, isNull, sql } from 'drizzle-orm';
import { AuthInputError, checkUserName, hashToken, isTokenShaped, newToken, TOKEN_ID_RE, tokenUsable } from '../auth';
import type { Conn } from '../database';
import { pgErrorCode } from '../errors';
import { apiTokens, users } from '../schema';

export interface User {
  name: string;
  admin: boolean;
  createdAt: string;
}

export interface TokenInfo {
  id: string;
  userName: string;
  /** The token's first characters (`ty_` and 7 more), to recognise it by. */
  prefix: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
}

/** Who a token lets in, as a request needs it. */
export interface TokenHolder {
  tokenId: string;
  user: string;
  admin: boolean;
  expiresAt: string | null;
}

const tokenColumns = {
  id: apiTokens.id,
  userName: apiTokens.userName,
  prefix: apiTokens.prefix,
  createdAt: apiTokens.createdAt,
  expiresAt: apiTokens.expiresAt,
  revokedAt: apiTokens.revokedAt,
};

export async function addUser(conn: Conn, o: { name: string; admin: boolean }): Promise<User> {
  const name = checkUserName(o.name);
  try {
    const [row] = await conn.insert(users).values({ name, admin: o.admin }).returning();
    return row!;
  } catch (err) {
    if (pgErrorCode(err) === '23505') throw new AuthInputError('name', `a user named ${name} exists already`);
    throw err;
  }
}

/** Every user, by name, with how many of their tokens are usable at `now`. */
export async function listUsers(conn: Conn, now: Date): Promise<(User & { tokens: number })[]> {
  const [rows, tokens] = await Promise.all([
    conn.select().from(users).orderBy(asc(users.name)),
    conn.select({ userName: apiTokens.userName, expiresAt: apiTokens.expiresAt, revokedAt: apiTokens.revokedAt }).from(apiTokens),
  ]);
  const usable = new Map<string, number>();
  for (const t of tokens) if (tokenUsable(t, now)) usable.set(t.userName, (usable.get(t.userName) ?? 0) + 1);
  return rows.map((u) => ({ ...u, tokens: usable.get(u.name) ?? 0 }));
}

/**
 * A new token for an existing user, expiring at `expiresAt` (null: never). The secret is in the
 * answer only: the table keeps its hash. One statement: no token for a user who is not there.
 */
export async function createToken(
  conn: Conn,
  o: { userName: string; expiresAt: string | null },
): Promise<{ token: string; info: TokenInfo }> {
  const t = newToken();
  const [row] = await conn
    .insert(apiTokens)
    .select(
      conn
        .select({
          id: sql<string>`${t.id}::text`.as('id'),
          userName: users.name,
          hash: sql<string>`${t.hash}::text`.as('hash'),
          prefix: sql<string>`${t.prefix}::text`.as('prefix'),
          createdAt: sql<string>`now()`.as('created_at'),
          expiresAt: sql<string | null>`${o.expiresAt}::timestamptz`.as('expires_at'),
          revokedAt: sql<string | null>`null::timestamptz`.as('revoked_at'),
        })
        .from(users)
        .where(eq(users.name, o.userName)),
    )
    .returning(tokenColumns);
  if (!row) throw new AuthInputError('user', `there is no user named ${o.userName} (add one with \`trainyard admin user add NAME\`)`);
  return { token: t.token, info: row };
}

/** Tokens, newest first; one user's when `userName` is given. */
export async function listTokens(conn: Conn, userName?: string): Promise<TokenInfo[]> {
  const rows = await conn
    .select(tokenColumns)
    .from(apiTokens)
    .where(userName === undefined ? undefined : eq(apiTokens.userName, userName))
    .orderBy(asc(apiTokens.userName), asc(apiTokens.createdAt), asc(apiTokens.id));
  return rows.reverse();
}

/**
 * Revoke the token named by its id, by the token itself, or by the start of its prefix (at least
 * `ty_` and 4 characters, and only one token may match). Revoking a revoked token changes
 * nothing and says when it was revoked.
 */
export async function revokeToken(conn: Conn, which: string, now: Date): Promise<{ info: TokenInfo; already: boolean }> {
  const w = which.trim();
  let cond;
  if (TOKEN_ID_RE.test(w)) cond = eq(apiTokens.id, w);
  else if (isTokenShaped(w)) cond = eq(apiTokens.hash, hashToken(w));
  // Not LIKE: `_` is a wildcard there and base64url has it.
  else if (/^ty_[A-Za-z0-9_-]{4,7}$/.test(w)) cond = sql`left(${apiTokens.prefix}, ${w.length}::integer) = ${w}::text`;
  else
    throw new AuthInputError(
      'token',
      `${JSON.stringify(which.slice(0, 60))} is neither a token id (tok_ and 12 hex digits), a token, nor a token's prefix (ty_ and 4 to 7 characters)`,
    );
  const found = await conn.select(tokenColumns).from(apiTokens).where(cond);
  if (found.length === 0) throw new AuthInputError('token', `no token matches ${JSON.stringify(w)} (see \`trainyard admin token list\`)`);
  if (found.length > 1)
    throw new AuthInputError(
      'token',
      `${JSON.stringify(w)} matches ${found.length} tokens (${found.map((t) => t.id).join(', ')}): name one by its id`,
    );
  const target = found[0]!;
  if (target.revokedAt !== null) return { info: target, already: true };
  const [row] = await conn
    .update(apiTokens)
    .set({ revokedAt: now.toISOString() })
    .where(and(eq(apiTokens.id, target.id), isNull(apiTokens.revokedAt)))
    .returning(tokenColumns);
  // Revoked meanwhile by someone else: it is revoked all the same.
  if (!row) return { info: (await conn.select(tokenColumns).from(apiTokens).where(eq(apiTokens.id, target.id)))[0]!, already: true };
  return { info: row, already: false };
}

/** The user a token lets in at `now`: null when there is no such token, or it was revoked or has expired. */
export async function findTokenHolder(conn: Conn, token: string, now: Date): Promise<TokenHolder | null> {
  if (!isTokenShaped(token)) return null;
  const [row] = await conn
    .select({ tokenId: apiTokens.id, user: users.name, admin: users.admin, expiresAt: apiTokens.expiresAt, revokedAt: apiTokens.revokedAt })
    .from(apiTokens)
    .innerJoin(users, eq(users.name, apiTokens.userName))
    .where(eq(apiTokens.hash, hashToken(token)));
  if (!row || !tokenUsable(row, now)) return null;
  return { tokenId: row.tokenId, user: row.user, admin: row.admin, expiresAt: row.expiresAt };
}
