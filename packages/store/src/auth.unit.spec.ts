// The pure parts of tokens mode: a token's form and hash, user names, lifetimes.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AuthInputError, checkUserName, hashToken, isTokenShaped, newToken, parseLifetime, TOKEN_ID_RE, tokenUsable } from './auth';

const DAY = 86_400_000;

describe('tokens', () => {
  it('a new token is ty_ and 43 base64url characters (256 random bits), with an id, its SHA-256 and its first 10 characters', () => {
    const t = newToken();
    expect(t.token).toMatch(/^ty_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(t.token.slice(3), 'base64url')).toHaveLength(32);
    expect(t.id).toMatch(TOKEN_ID_RE);
    expect(t.hash).toBe(createHash('sha256').update(t.token).digest('hex'));
    expect(t.prefix).toBe(t.token.slice(0, 10));
    // The stored parts do not hold the secret.
    expect(t.hash).not.toContain(t.token.slice(3));
  });

  it('no two tokens or ids are alike', () => {
    const many = Array.from({ length: 200 }, newToken);
    expect(new Set(many.map((t) => t.token)).size).toBe(200);
    expect(new Set(many.map((t) => t.id)).size).toBe(200);
  });

  it('the hash is deterministic and differs for a token one character off', () => {
    const { token } = newToken();
    expect(hashToken(token)).toBe(hashToken(token));
    const other = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
    expect(hashToken(other)).not.toBe(hashToken(token));
  });

  it('only strings of the exact form are tokens (before any lookup)', () => {
    const { token } = newToken();
    expect(isTokenShaped(token)).toBe(true);
    for (const bad of [
      '',
      'ty_',
      token.slice(0, -1),
      `${token}x`,
      ` ${token}`,
      token.replace('ty_', 'TY_'),
      token.slice(0, -1) + '=',
      'Bearer ' + token,
    ])
      expect(isTokenShaped(bad), JSON.stringify(bad)).toBe(false);
  });

  it('a token is usable until it expires or is revoked', () => {
    const now = new Date('2026-01-01T00:00:00Z');
    expect(tokenUsable({ expiresAt: null, revokedAt: null }, now)).toBe(true);
    expect(tokenUsable({ expiresAt: '2026-01-01T00:00:01Z', revokedAt: null }, now)).toBe(true);
    expect(tokenUsable({ expiresAt: '2026-01-01T00:00:00Z', revokedAt: null }, now)).toBe(false);
    expect(tokenUsable({ expiresAt: null, revokedAt: '2025-12-31T00:00:00Z' }, now)).toBe(false);
  });
});

describe('lifetimes (--expires)', () => {
  it.each([
    ['30d', 30 * DAY],
    ['12h', 12 * 3_600_000],
    ['90m', 90 * 60_000],
    ['2w', 14 * DAY],
    ['1y', 365.25 * DAY],
    ['1.5 days', 1.5 * DAY],
    [' 7D ', 7 * DAY],
  ])('%s', (text, expected) => {
    expect(parseLifetime(text)).toBe(expected);
  });

  it.each([
    ['30', 'has no unit'],
    ['', 'has no unit'],
    ['soon', 'is not a duration'],
    ['30 fortnights', 'is not a duration'],
    ['-1d', 'shorter than one minute'],
    ['30s', 'shorter than one minute'],
    ['11y', 'longer than ten years'],
  ])('%j is refused: %s', (text, words) => {
    let caught: unknown;
    try {
      parseLifetime(text);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(AuthInputError);
    expect((caught as AuthInputError).field).toBe('expires');
    expect((caught as Error).message).toContain(words);
  });
});

describe('user names', () => {
  it('letters, digits and . _ @ - up to 100 characters', () => {
    expect(checkUserName('alice')).toBe('alice');
    expect(checkUserName('bob.smith@lab-1_x')).toBe('bob.smith@lab-1_x');
    for (const bad of ['', 'a b', 'a/b', 'é', 'x'.repeat(101), 'a\nb'])
      expect(() => checkUserName(bad), JSON.stringify(bad)).toThrow(AuthInputError);
  });

  it("the service's own actors and local mode's user are reserved", () => {
    for (const name of ['local', 'scheduler', 'Runner', 'recovery', 'timeout']) expect(() => checkUserName(name)).toThrow(/reserved/);
  });
});
