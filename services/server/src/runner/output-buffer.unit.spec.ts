// The run's output buffer: batches stored in order; while held (reports waiting for the exit's
// transaction), nothing stores a line but an explicit flush or the exit taking them.
import { describe, expect, it } from 'vitest';
import type { LogLine } from '@trainyard/store';
import { outputBuffer } from './output-buffer';

const line = (seq: number): LogLine => ({ seq, stream: 'stdout', line: `l${seq}`, at: new Date(0).toISOString() });

describe('output buffer', () => {
  it('a full buffer and the timer store a batch; while held neither does, and the exit takes every line', async () => {
    const stored: number[][] = [];
    const out = outputBuffer(async (lines) => void stored.push(lines.map((l) => l.seq)));
    for (let i = 1; i <= 500; i++) await out.push(line(i));
    expect(stored).toEqual([Array.from({ length: 500 }, (_, i) => i + 1)]);

    out.hold(true);
    for (let i = 501; i <= 1100; i++) await out.push(line(i));
    await out.timerFlush();
    expect(stored).toHaveLength(1);
    expect(out.take().map((l) => l.seq)).toEqual(Array.from({ length: 600 }, (_, i) => i + 501));

    out.hold(false);
    await out.push(line(1101));
    await out.timerFlush();
    expect(stored.at(-1)).toEqual([1101]);
  });
  it('an explicit flush stores even while held (a failed exit quotes what is stored)', async () => {
    const stored: number[] = [];
    const out = outputBuffer(async (lines) => void stored.push(...lines.map((l) => l.seq)));
    out.hold(true);
    await out.push(line(1));
    await out.flush();
    expect(stored).toEqual([1]);
  });
});
