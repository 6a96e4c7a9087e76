import { describe, expect, it } from 'vitest';
import { createOutputLimiter, type OutputEntry, type OutputLimits } from './output-limits.mjs';

const NONE: OutputLimits = {
  maxLinesPerSecond: Infinity,
  maxProtocolLinesPerSecond: Infinity,
  maxProtocolLinesPerTask: Infinity,
  maxBytesPerTask: Infinity,
};

function limiter(limits: Partial<OutputLimits>) {
  const timer = { armed: [] as number[], disarmed: 0, arm: (ms: number) => timer.armed.push(ms), disarm: () => (timer.disarmed += 1) };
  return { l: createOutputLimiter({ ...NONE, ...limits }, timer), timer };
}

const lines = (entries: OutputEntry[]) => entries.map((e) => e.line);
const progress = (step: number) => JSON.stringify({ type: 'progress', step });

describe('createOutputLimiter', () => {
  it('given no limits, when lines come, then every line is stored as it came', () => {
    const { l, timer } = limiter({});
    expect(l.accept('stdout', 'a', 0)).toEqual([{ stream: 'stdout', line: 'a' }]);
    expect(l.accept('stderr', 'b', 1)).toEqual([{ stream: 'stderr', line: 'b' }]);
    expect(l.roll(2000)).toEqual([]);
    expect(l.totals()).toEqual([]);
    expect(timer.armed).toEqual([]);
  });

  it('given a rate of 2 log lines a second, when 5 come in one second, then 2 are stored and the end of the second counts the 3 dropped', () => {
    const { l, timer } = limiter({ maxLinesPerSecond: 2 });
    const stored = [1, 2, 3, 4, 5].flatMap((i) => lines(l.accept('stdout', `line ${i}`, 100 + i)));
    expect(stored).toEqual(['line 1', 'line 2']);
    // The first drop asks for the timer once, for the end of the second that began at 0.
    expect(timer.armed).toEqual([1000 - 103]);
    expect(l.roll(1000)).toEqual([{ stream: 'stderr', line: '[trainyard] dropped 3 lines (rate limit)' }]);
    expect(timer.disarmed).toBe(1);
    expect(lines(l.accept('stdout', 'next second', 1001))).toEqual(['next second']);
  });

  it('given a second that ended without the timer, when the next line comes, then the marker comes first, then the line', () => {
    const { l } = limiter({ maxLinesPerSecond: 1 });
    l.accept('stdout', 'a', 10);
    l.accept('stdout', 'b', 20);
    expect(lines(l.accept('stdout', 'c', 1500))).toEqual(['[trainyard] dropped 1 lines (rate limit)', 'c']);
  });

  it('given the protocol rate is reached, when more progress comes, then only the newest is held and stored when the second ends', () => {
    const { l, timer } = limiter({ maxProtocolLinesPerSecond: 1 });
    expect(lines(l.accept('stdout', progress(1), 0))).toEqual([progress(1)]);
    expect(l.accept('stdout', progress(2), 10)).toEqual([]);
    expect(l.accept('stdout', progress(3), 20)).toEqual([]);
    expect(l.accept('stdout', JSON.stringify({ type: 'phase', phase: 'training' }), 30)).toEqual([]);
    expect(timer.armed).toHaveLength(1);
    expect(l.roll(1000)).toEqual([
      { stream: 'stdout', line: progress(3) },
      { stream: 'stderr', line: '[trainyard] dropped 2 protocol lines (rate limit, TRAINYARD_LOG_PROTOCOL_LINES_PER_SECOND)' },
    ]);
  });

  it('given protocol lines, when plain lines hit their rate, then protocol lines are not held back by it', () => {
    const { l } = limiter({ maxLinesPerSecond: 1 });
    l.accept('stdout', 'log', 0);
    expect(lines(l.accept('stdout', progress(1), 1))).toEqual([progress(1)]);
    // On stderr a message-shaped line is a plain line.
    expect(l.accept('stderr', progress(2), 2)).toEqual([]);
  });

  it('given a total of protocol lines, when it is reached, then one marker says so, the rest are dropped and counted at the end', () => {
    const { l } = limiter({ maxProtocolLinesPerTask: 2 });
    const stored = [1, 2, 3, 4].flatMap((i) => lines(l.accept('stdout', progress(i), i)));
    expect(stored).toEqual([
      progress(1),
      progress(2),
      '[trainyard] 2 protocol lines reached (TRAINYARD_LOG_PROTOCOL_LINES_PER_TASK): further ones are dropped',
    ]);
    expect(lines(l.totals())).toEqual(['[trainyard] dropped 2 protocol lines past 2 (TRAINYARD_LOG_PROTOCOL_LINES_PER_TASK)']);
  });

  it('given a byte total, when plain output passes it, then later plain lines are dropped but protocol lines still pass', () => {
    const { l } = limiter({ maxBytesPerTask: 10 });
    expect(lines(l.accept('stdout', '12345', 0))).toEqual(['12345']);
    expect(lines(l.accept('stdout', '123456', 1))).toEqual([
      '[trainyard] 10 bytes of output reached (TRAINYARD_LOG_MAX_BYTES_PER_TASK): further log lines are dropped',
    ]);
    // Once over, even a line that would fit is dropped: the output is not left with holes.
    expect(l.accept('stdout', 'x', 2)).toEqual([]);
    expect(lines(l.accept('stdout', progress(1), 3))).toEqual([progress(1)]);
    expect(lines(l.totals())).toEqual(['[trainyard] dropped 2 log lines past 10 bytes of output (TRAINYARD_LOG_MAX_BYTES_PER_TASK)']);
    expect(l.totals()).toEqual([]);
  });
});
