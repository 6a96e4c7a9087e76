import { describe, expect, it } from 'vitest';
import { DatasetChecker, estimateTokens, MALFORMED_KEPT, recordFormat, refusalOf, warningsOf, type DatasetReport } from './dataset-check';

/** The report on `text`, fed in chunks of `size` bytes (to cross every boundary). */
function check(text: string, size = 7, maxJsonBytes = 1 << 20): DatasetReport {
  const c = new DatasetChecker({ maxJsonBytes });
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += size) c.push(bytes.subarray(i, i + size));
  return c.end();
}

const lines = (...records: unknown[]) => records.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';

describe('recordFormat', () => {
  it.each([
    [{ instruction: 'Add', input: '1, 2', output: '3' }, 'alpaca'],
    [{ instruction: 'Say hi', output: 'hi' }, 'alpaca'],
    [
      {
        conversations: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: 'hello' },
        ],
      },
      'conversations',
    ],
    [
      {
        conversations: [
          { from: 'human', value: 'hi' },
          { from: 'gpt', value: 'hello' },
        ],
      },
      'conversations',
    ],
    [
      {
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'user', content: 'hi' },
        ],
      },
      'messages',
    ],
    [{ messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }] }, 'messages'],
    [{ question: 'Why?', answer: 'Because.' }, 'question_answer'],
    [{ text: 'plain text' }, 'text'],
  ])('%j is %s', (record, format) => {
    expect(recordFormat(record)).toMatchObject({ format });
  });

  it.each([
    [[1, 2], /JSON object, not an array/],
    ['text', /not a string/],
    [null, /not null/],
    [{ prompt: 'x', completion: 'y' }, /none of the known fields \(it has "prompt", "completion"\)/],
    [{}, /it is empty/],
    [{ instruction: 'x' }, /"instruction" and "output" as text/],
    [{ instruction: '', output: ' ' }, /both empty/],
    [{ messages: [] }, /non-empty list/],
    [{ messages: [{ content: 'hi' }] }, /messages\[0\] has no role/],
    [{ messages: [{ role: 'user', content: 3 }] }, /messages\[0\] has no text content/],
    [{ conversations: 'hi' }, /conversations must be a non-empty list/],
    [{ question: 'q' }, /"question" and "answer" as text/],
    [{ text: '   ' }, /non-empty text/],
  ])('%j is refused: %s', (record, problem) => {
    const v = recordFormat(record);
    expect('problem' in v && v.problem).toMatch(problem);
  });
});

describe('DatasetChecker on JSON lines', () => {
  it('counts records by format, skips blank lines, and estimates tokens', () => {
    const r = check(
      lines({ instruction: 'Write a function', input: '', output: 'def f(): pass' }, '', { text: 'some text here' }, '   ', {
        question: 'q?',
        answer: 'a.',
      }),
    );
    expect(r).toMatchObject({
      layout: 'json-lines',
      format: 'mixed',
      formats: { alpaca: 1, text: 1, question_answer: 1 },
      records: 3,
      malformedCount: 0,
    });
    expect(r.estimatedTokens).toBeGreaterThan(0);
    expect(refusalOf(r)).toBeNull();
    expect(warningsOf(r)).toEqual([]);
  });

  it('names one format when every record has it, with or without a final newline and with CRLF', () => {
    const r = check('{"text":"a"}\r\n{"text":"b"}\r\n{"text":"c"}', 3);
    expect(r).toMatchObject({ format: 'text', records: 3, malformedCount: 0 });
  });

  it('reports lines that are not JSON by line number and refuses the file', () => {
    const r = check(lines({ text: 'ok' }, 'this is not json', { text: 'ok' }, '', '{"text": "unterminated'));
    expect(r.malformed.map((m) => [m.line, m.json])).toEqual([
      [2, false],
      [5, false],
    ]);
    expect(refusalOf(r)).toMatch(/^it is not valid JSON lines: line 2: not JSON: .*; line 5: not JSON: /);
  });

  it('keeps the records in no known format with their lines, and warns instead of refusing', () => {
    const r = check(lines({ text: 'ok' }, { prompt: 'p' }, { text: 'ok' }, [1]));
    expect(r.records).toBe(2);
    expect(r.malformed.map((m) => [m.line, m.record, m.json])).toEqual([
      [2, 2, true],
      [4, 4, true],
    ]);
    expect(refusalOf(r)).toBeNull();
    expect(warningsOf(r)).toEqual([
      expect.stringMatching(/^2 of the dataset's 4 records are in no known format and will be skipped: line 2: /),
    ]);
  });

  it('refuses a file none of whose records is usable, naming the formats it knows', () => {
    const r = check(lines({ prompt: 'p', completion: 'c' }));
    expect(refusalOf(r)).toMatch(/^none of its 1 records is in a known format \(.*"instruction".*"messages".*\): line 1: /);
  });

  it('refuses an empty or blank file', () => {
    expect(refusalOf(check(''))).toBe('it is empty (no records)');
    expect(refusalOf(check('\n  \n\n'))).toBe('it is empty (no records)');
  });

  it('counts every malformed line but lists the first ones only', () => {
    const bad = Array.from({ length: MALFORMED_KEPT + 10 }, () => 'nope');
    const r = check(lines(...bad, { text: 'fine' }));
    expect(r.malformedCount).toBe(MALFORMED_KEPT + 10);
    expect(r.malformed).toHaveLength(MALFORMED_KEPT);
    expect(refusalOf(r)).toMatch(/; and 25 more$/);
  });

  it('a line over the size limit is malformed, without holding it', () => {
    const r = check(lines({ text: 'x'.repeat(500) }, { text: 'ok' }), 64, 100);
    expect(r.records).toBe(1);
    expect(r.malformed[0]).toMatchObject({ line: 1, json: false, reason: 'the line is longer than 100 bytes' });
    expect(refusalOf(r)).toMatch(/line 1: the line is longer than 100 bytes/);
  });

  it('counts line numbers after leading blank lines and a byte order mark', () => {
    const r = check('\uFEFF\n\n{"text":"a"}\nbad\n', 1);
    expect(r.malformed[0]).toMatchObject({ line: 4 });
  });
});

describe('DatasetChecker on a JSON array', () => {
  it('counts the records of an array, naming malformed ones by position', () => {
    const r = check(`  [\n ${JSON.stringify({ instruction: 'i', output: 'o' })},\n {"oops": 1},\n {"text": "t"}\n]\n`);
    expect(r).toMatchObject({ layout: 'json-array', format: 'mixed', records: 2, malformedCount: 1 });
    expect(r.malformed[0]).toMatchObject({ line: null, record: 2, json: true });
    expect(warningsOf(r)[0]).toMatch(/record 2: the record has none of the known fields/);
  });

  it('reports the line of a syntax error and refuses', () => {
    const r = check('[\n{"text": "a"},\n{"text": "b",,}\n]');
    expect(r.notJson[0]).toMatchObject({ json: false, line: 3 });
    expect(refusalOf(r)).toMatch(/^it is not valid JSON: line 3: not JSON: /);
  });

  it('refuses an empty array, and an array too large to parse whole', () => {
    expect(refusalOf(check('[]'))).toBe('it is empty (no records)');
    expect(refusalOf(check(`[${'{"text":"x"},'.repeat(20)}{"text":"x"}]`, 16, 100))).toMatch(
      /limited to 100 bytes; write larger ones as JSON lines/,
    );
  });
});

describe('estimateTokens', () => {
  it('counts about four characters a token, and one per CJK character', () => {
    expect(estimateTokens('abcdefgh')).toBe(2);
    expect(estimateTokens('微调模型')).toBe(4);
    expect(estimateTokens('')).toBe(0);
  });
});
