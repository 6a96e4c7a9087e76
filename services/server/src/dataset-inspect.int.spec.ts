// Reading a dataset at submission, on real files: a JSON lines file larger than one read chunk
// is counted whole, a folder needs a file somewhere in it, and what cannot be read (absent, a
// FIFO put in a file's place) is refused at once instead of hanging or failing a trainer later.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectDataset } from './dataset-inspect';

describe('inspectDataset', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'trainyard-inspect-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('counts every record of a JSON lines file several read chunks long, and the lines of the malformed ones', async () => {
    const line = JSON.stringify({ instruction: 'Say something long.', input: '', output: 'x'.repeat(500) });
    const lines = Array.from({ length: 9000 }, (_, i) => (i === 7000 ? '{"prompt":"?"}' : line));
    writeFileSync(join(dir, 'big.jsonl'), `${lines.join('\n')}\n`);
    const r = await inspectDataset(join(dir, 'big.jsonl'));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.summary).toMatchObject({ kind: 'file', layout: 'json-lines', format: 'alpaca', records: 8999, malformedCount: 1 });
    if (r.summary.kind === 'file') {
      expect(r.summary.bytes).toBeGreaterThan(3 * 1024 * 1024);
      expect(r.summary.malformed).toEqual([{ line: 7001, record: 7001, reason: expect.stringMatching(/none of the known fields/) }]);
      expect(r.summary.estimatedTokens).toBeGreaterThan(8999 * 125);
    }
    expect(r.warnings).toEqual([
      expect.stringMatching(/^1 of the dataset's 9000 records is in no known format and will be skipped: line 7001: /),
    ]);
  });

  it('reads a JSON array file', async () => {
    writeFileSync(
      join(dir, 'array.json'),
      JSON.stringify(
        [
          { question: 'q', answer: 'a' },
          { question: 'q2', answer: 'a2' },
        ],
        null,
        2,
      ),
    );
    const r = await inspectDataset(join(dir, 'array.json'));
    expect(r.ok && r.summary).toMatchObject({ kind: 'file', layout: 'json-array', format: 'question_answer', records: 2 });
  });

  it('refuses an empty file and one with a line that is not JSON, saying why', async () => {
    writeFileSync(join(dir, 'empty.jsonl'), '');
    expect(await inspectDataset(join(dir, 'empty.jsonl'))).toEqual({ ok: false, problem: 'it is empty (no records)' });
    writeFileSync(join(dir, 'broken.jsonl'), '{"text":"a"}\n{"text":\n');
    const r = await inspectDataset(join(dir, 'broken.jsonl'));
    expect(!r.ok && r.problem).toMatch(/^it is not valid JSON lines: line 2: not JSON: /);
  });

  it('accepts a folder with a file somewhere inside, and refuses an empty one', async () => {
    mkdirSync(join(dir, 'empty-folder', 'inner'), { recursive: true });
    expect(await inspectDataset(join(dir, 'empty-folder'))).toEqual({ ok: false, problem: 'it is an empty folder' });
    mkdirSync(join(dir, 'folder', 'a', 'b'), { recursive: true });
    writeFileSync(join(dir, 'folder', 'a', 'b', 'train.parquet'), 'PAR1');
    expect(await inspectDataset(join(dir, 'folder'))).toEqual({ ok: true, summary: { kind: 'folder', files: 1 }, warnings: [] });
  });

  it('refuses what cannot be read: an absent path, and a FIFO without waiting for a writer', async () => {
    expect(await inspectDataset(join(dir, 'absent.jsonl'))).toEqual({ ok: false, problem: 'it cannot be read (ENOENT)' });
    const fifo = join(dir, 'fifo.jsonl');
    const made = spawnSync('mkfifo', [fifo]);
    expect(made.status, String(made.stderr)).toBe(0);
    expect(await inspectDataset(fifo)).toEqual({ ok: false, problem: 'it is neither a file nor a folder' });
  });

  it('a file changed since it was inspected is inspected again, even at the same size', async () => {
    const path = join(dir, 'changing.jsonl');
    const good = `${JSON.stringify({ text: 'hello there' })}\n`;
    writeFileSync(path, good);
    // Settled (older than the timestamps' granularity can hide a change): its inspection is remembered.
    await new Promise((r) => setTimeout(r, 2100));
    expect((await inspectDataset(path)).ok).toBe(true);
    expect((await inspectDataset(path)).ok).toBe(true);
    const bad = 'x'.repeat(good.length - 1) + '\n';
    writeFileSync(path, bad);
    expect(await inspectDataset(path)).toMatchObject({ ok: false, problem: expect.stringMatching(/not valid JSON lines/) });
    // A remembered answer is a copy: changing it changes nothing for the next caller.
    writeFileSync(path, good);
    await new Promise((r) => setTimeout(r, 2100));
    const first = await inspectDataset(path);
    if (first.ok) first.warnings.push('changed by a caller');
    expect((await inspectDataset(path)).ok && (await inspectDataset(path))).toMatchObject({ warnings: [] });
  });
});
