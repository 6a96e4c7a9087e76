import { describe, expect, it } from 'vitest';
import { DatasetValidator, datasetFormat, MAX_JSON_TEXT_BYTES, safeFileName, uploadedFileName } from './upload';

const feed = (format: 'json' | 'jsonl', ...chunks: string[]) => {
  const v = new DatasetValidator(format);
  for (const c of chunks) {
    const p = v.push(Buffer.from(c));
    if (p) return p;
  }
  return v.end();
};

describe('datasetFormat and safeFileName', () => {
  it('knows .json and .jsonl, whatever the case', () => {
    expect(datasetFormat('a.jsonl')).toBe('jsonl');
    expect(datasetFormat('A.JSON')).toBe('json');
    expect(datasetFormat('a.csv')).toBeNull();
    expect(datasetFormat('a.jsonl.exe')).toBeNull();
  });

  it('keeps the name readable and harmless', () => {
    expect(safeFileName('../../etc/passwd.jsonl')).toBe('passwd.jsonl');
    expect(safeFileName('C:\\Users\\me\\my data.json')).toBe('my_data.json');
    expect(safeFileName('...hidden.jsonl')).toBe('hidden.jsonl');
    expect(safeFileName('')).toBe('dataset');
    expect(safeFileName(`${'x'.repeat(300)}.jsonl`)).toHaveLength(100);
    expect(safeFileName(`${'x'.repeat(300)}.jsonl`).endsWith('.jsonl')).toBe(true);
  });
});

describe('DatasetValidator', () => {
  it('accepts JSON lines split anywhere, blank lines and CRLF included', () => {
    expect(feed('jsonl', '{"text":"a"}\n{"te', 'xt":"b"}\r\n\n', '{"text":"c"}')).toBeNull();
  });

  it('names the first line that is not JSON', () => {
    expect(feed('jsonl', '{"a":1}\n', 'not json\n{"b":2}\n')).toMatch(/^line 2 is not JSON/);
    expect(feed('jsonl', '{"a":1}\n{"b":')).toMatch(/^line 2 is not JSON/);
  });

  it('wants at least one record', () => {
    expect(feed('jsonl', '\n\n')).toMatch(/no records/);
    expect(feed('json', '  ')).toMatch(/empty/);
  });

  it('parses a .json file whole', () => {
    expect(feed('json', '[{"text":', '"a"}]')).toBeNull();
    expect(feed('json', '[{"text":"a"}')).toMatch(/^the file is not JSON/);
    expect(feed('json', 'PK\u0003\u0004')).toMatch(/^the file is not JSON/);
  });

  it('holds at most MAX_JSON_TEXT_BYTES of one value', () => {
    const v = new DatasetValidator('json');
    const mib = Buffer.alloc(1024 * 1024, 0x20);
    let problem: string | null = null;
    for (let i = 0; i <= MAX_JSON_TEXT_BYTES / mib.length && !problem; i++) problem = v.push(mib);
    expect(problem).toMatch(/limited to 64 MiB/);
  });

  it('an uploaded file is named by the name it was sent with, without the unique prefix it is stored under', () => {
    expect(uploadedFileName('611935b9-0885-4f61-a3cd-103404604a5a-tiny-dataset.jsonl')).toBe('tiny-dataset.jsonl');
    expect(uploadedFileName('my-data.jsonl')).toBe('my-data.jsonl');
  });
});
