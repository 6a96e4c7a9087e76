import { describe, expect, it } from 'vitest';
import { createLineSplitter, utf8Boundary } from './line-splitter.mjs';

const b = (s: string) => Buffer.from(s);

describe('createLineSplitter', () => {
  it('given chunks that end mid-line, when pushed, then each complete line comes out once, in order', () => {
    const s = createLineSplitter(100);
    expect(s.push(b('one\ntw'))).toEqual(['one']);
    expect(s.push(b('o\nthr'))).toEqual(['two']);
    expect(s.push(b('ee\n\nfour\n'))).toEqual(['three', '', 'four']);
    expect(s.end()).toBeNull();
  });

  it('given a last line without a newline, when the stream ends, then end returns it', () => {
    const s = createLineSplitter(100);
    expect(s.push(b('a\nlast'))).toEqual(['a']);
    expect(s.end()).toBe('last');
    expect(s.end()).toBeNull();
  });

  it('given Windows line endings, when split, then the \\r before \\n is dropped', () => {
    const s = createLineSplitter(100);
    expect(s.push(b('dos\r\nunix\n'))).toEqual(['dos', 'unix']);
  });

  it('given a line over the cap, when split, then it is cut with a marker counting the bytes left out', () => {
    const s = createLineSplitter(10);
    expect(s.push(b(`${'a'.repeat(25)}\nshort\n`))).toEqual([`${'a'.repeat(10)}… [cut 15 bytes]`, 'short']);
  });

  it('given a long line that arrives in many chunks, when split, then the cut and the count are the same as in one chunk', () => {
    const s = createLineSplitter(10);
    for (let i = 0; i < 25; i++) expect(s.push(b('x'))).toEqual([]);
    expect(s.push(b('\n'))).toEqual([`${'x'.repeat(10)}… [cut 15 bytes]`]);
  });

  it('given a cut that would split a UTF-8 character, when split, then the cut moves back to the character boundary', () => {
    const s = createLineSplitter(5);
    // 'é' is two bytes: 5 bytes would end inside the third one.
    expect(s.push(b(`${'é'.repeat(4)}\n`))).toEqual(['éé… [cut 4 bytes]']);
  });
});

describe('utf8Boundary', () => {
  it('given a cut inside a character, then the largest boundary below it; given a boundary, then itself', () => {
    const buf = b('aé€');
    // a: 0, é: 1-2, €: 3-5
    expect(utf8Boundary(buf, 2)).toBe(1);
    expect(utf8Boundary(buf, 3)).toBe(3);
    expect(utf8Boundary(buf, 5)).toBe(3);
    expect(utf8Boundary(buf, 6)).toBe(6);
    expect(utf8Boundary(buf, 100)).toBe(6);
    expect(utf8Boundary(buf, 0)).toBe(0);
  });
});
