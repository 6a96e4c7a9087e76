import { describe, expect, it } from 'vitest';
import { safeJson, safeJsonOf, safeText, safeValue } from './safe-text.mjs';

const R = '\uFFFD';

describe('safeText', () => {
  it('replaces NUL and lone surrogates with U+FFFD', () => {
    expect(safeText('last\u0000line')).toBe(`last${R}line`);
    expect(safeText('\u0000\u0000')).toBe(R + R);
    expect(safeText('a\uD800b')).toBe(`a${R}b`);
    expect(safeText('a\uDC00b')).toBe(`a${R}b`);
    expect(safeText('\uDBFF')).toBe(R);
    expect(safeText('\uDC00\uD800')).toBe(R + R); // low before high is no pair
    expect(safeText('x\uD800\uD800\uDC00')).toBe(`x${R}\uD800\uDC00`);
  });

  it('keeps everything else, surrogate pairs included, and returns the same string when clean', () => {
    const clean = 'loss 0.12 🦜 名前 \t \u001b[31m \u0001 \uFFFF';
    expect(safeText(clean)).toBe(clean);
    expect(safeText('')).toBe('');
    expect(safeText('\uD83D\uDE00')).toBe('\uD83D\uDE00');
  });

  it('is stable when called repeatedly (no state kept between calls)', () => {
    for (let i = 0; i < 3; i++) expect(safeText('a\u0000')).toBe(`a${R}`);
    for (let i = 0; i < 3; i++) expect(safeText('clean')).toBe('clean');
  });
});

describe('safeValue and safeJson', () => {
  it('make every string of a value safe, keys included', () => {
    const v = { message: 'bad\u0000', list: ['\uD800', 3, null, true], nested: { ['k\u0000']: 'v' } };
    expect(safeValue(v)).toEqual({ message: `bad${R}`, list: [R, 3, null, true], nested: { [`k${R}`]: 'v' } });
    expect(JSON.parse(safeJson(v))).toEqual(safeValue(v));
  });

  it('produce JSON without the escapes jsonb refuses', () => {
    const json = safeJson({ a: '\u0000', b: '\uDFFF', c: '\uD83D\uDE00' });
    expect(json).not.toMatch(/\\u0000|\\ud[89a-f]/i);
    expect(JSON.parse(json)).toEqual({ a: R, b: R, c: '\uD83D\uDE00' });
  });

  it('leave clean values and escaped backslashes alone', () => {
    expect(safeJson({ a: 'x', n: 1 })).toBe('{"a":"x","n":1}');
    expect(JSON.parse(safeJson({ a: '\\u0000' }))).toEqual({ a: '\\u0000' });
  });

  it('keep what toJSON says (dates)', () => {
    const at = new Date('2026-01-01T00:00:00.000Z');
    expect(JSON.parse(safeJson({ at, s: '\u0000' }))).toEqual({ at: at.toISOString(), s: R });
  });
});

describe('safeJsonOf', () => {
  it('gives the value itself with its JSON when nothing needs replacing', () => {
    const value = { message: 'fine', n: [1, 2] };
    const out = safeJsonOf(value);
    expect(out.value).toBe(value);
    expect(out.json).toBe(JSON.stringify(value));
  });

  it('gives the replaced value with the JSON it stores when something does', () => {
    const out = safeJsonOf({ message: `a\u0000b`, lone: '\uD800' });
    expect(out.value).toEqual({ message: `a${R}b`, lone: R });
    expect(out.json).toBe(safeJson({ message: `a\u0000b`, lone: '\uD800' }));
    expect(JSON.parse(out.json)).toEqual(out.value);
  });
});
