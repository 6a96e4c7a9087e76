import { describe, expect, it } from 'vitest';
import { parseProcStat, readProcessStartTime, readProcStat } from './proc-stat.mjs';

describe('readProcStat and readProcessStartTime', () => {
  it('given this process, then its state and a start time of digits, the same twice', () => {
    const stat = readProcStat(process.pid);
    expect(stat?.state).toMatch(/^[A-Za-z]$/);
    expect(stat?.startTime).toMatch(/^\d+$/);
    expect(readProcessStartTime(process.pid)).toBe(stat?.startTime);
  });

  it('given a pid that cannot be a process, then null', () => {
    for (const pid of [0, -1, 1.5, Number.NaN, 2 ** 31]) expect(readProcStat(pid)).toBeNull();
    expect(readProcessStartTime(-5)).toBeNull();
  });

  it('given the text of a stat file, then the same answer as reading it', () => {
    const fields = `S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0`;
    expect(parseProcStat(`9 (a) b) ${fields}`)).toEqual({ state: 'S', startTime: '777' });
  });
});
