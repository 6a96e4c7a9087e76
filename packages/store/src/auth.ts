// Users and bearer tokens for tokens mode (TRAINYARD_AUTH=tokens): what a user name may be,
// what a token looks like, what is kept of it, how long it lives. Pure, apart from the random
// bytes of a new token; the statements are in sql/users.ts.
import { createHash, randomBytes } from 'node:crypto';
import ms from 'ms';

/** A bad value for one input (a flag of `trainyard admin`), named. */
export class AuthInputError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'AuthInputError';
  }
}

/** The characters a task owner's name may have (the audit log and the tasks table hold it). */
export const USER_NAME_RE = /^[A-Za-z0-9._@-]{1,100}$/;

/**
 * Actors the service itself records events as, and the implicit user of local mode: a person
 * with one of these names would be indistinguishable from them in the audit log.
 */
const RESERVED_NAMES = new Set(['local', 'scheduler', 'runner', 'trainer', 'recovery', 'timeout', 'inventory', 'system']);

export function checkUserName(name: string, field = 'name'): string {
  if (!USER_NAME_RE.test(name))
    throw new AuthInputError(field, `${JSON.stringify(name)} is not a user name (1 to 100 letters, digits, and . _ @ -)`);
  if (RESERVED_NAMES.has(name.toLowerCase()))
    throw new AuthInputError(field, `${JSON.stringify(name)} is reserved (the service records its own events under it)`);
  return name;
}

export const TOKEN_PREFIX = 'ty_';
/** 32 random bytes (256 bits) in base64url: 43 characters after the prefix. */
const TOKEN_RE = /^ty_[A-Za-z0-9_-]{43}$/;
export const TOKEN_ID_RE = /^tok_[0-9a-f]{12}$/;
/** What is kept in clear to recognise a token by: `ty_` and 7 characters (42 of its 256 bits). */
const SHOWN_CHARS = 10;

export interface NewToken {
  /** The secret: shown once, never stored. */
  token: string;
  /** Public name of the token (listings, revocation, the audit). */
  id: string;
  hash: string;
  prefix: string;
}

export function newToken(): NewToken {
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  return { token, id: `tok_${randomBytes(6).toString('hex')}`, hash: hashToken(token), prefix: token.slice(0, SHOWN_CHARS) };
}

/** Whether `text` has a token's form: checked before any lookup, so garbage costs no query. */
export function isTokenShaped(text: string): boolean {
  return TOKEN_RE.test(text);
}

/**
 * What is stored of a token: its SHA-256. A password hash (bcrypt, scrypt, argon2) is slow to make
 * guessing a secret a person chose expensive; a token is 256 random bits, which no guessing
 * finds, so one fast hash already makes a copied table useless, and a request finds its token
 * by an index lookup on the hash instead of trying a slow hash against every row.
 */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

const MINUTE = 60_000;
const LONGEST = 3650 * 24 * 60 * MINUTE;

/**
 * A token's lifetime as written on the command line: a number and a unit, as `ms` reads them
 * (`90m`, `12h`, `30d`, `2w`, `1y`, `1.5 days`). A bare number is refused: ms would read it as
 * milliseconds. From one minute to ten years.
 */
export function parseLifetime(text: string, field = 'expires'): number {
  const t = text.trim();
  if (!/[a-z]/i.test(t))
    throw new AuthInputError(field, `${JSON.stringify(text)} has no unit: write a number and a unit, e.g. 30d, 12h, 90m, 2w`);
  let value: number | undefined;
  try {
    value = ms(t as ms.StringValue);
  } catch {
    value = undefined;
  }
  if (value === undefined || !Number.isFinite(value))
    throw new AuthInputError(field, `${JSON.stringify(text)} is not a duration (e.g. 30d, 12h, 90m, 2w)`);
  if (value < MINUTE) throw new AuthInputError(field, `${JSON.stringify(text)} is shorter than one minute`);
  if (value > LONGEST) throw new AuthInputError(field, `${JSON.stringify(text)} is longer than ten years`);
  return value;
}

/** Whether a token row lets its holder in at `now`. */
export function tokenUsable(t: { expiresAt: string | null; revokedAt: string | null }, now: Date): boolean {
  return t.revokedAt === null && (t.expiresAt === null || Date.parse(t.expiresAt) > now.getTime());
}
