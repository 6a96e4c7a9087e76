import { describe, expect, it } from 'vitest';
import { taskOutputDir } from './outputs';

describe('taskOutputDir', () => {
  it('is the task id when no folder is asked for', () => {
    expect(taskOutputDir('t1')).toBe('t1');
    expect(taskOutputDir('t1', undefined)).toBe('t1');
  });

  it('nests the asked-for folder under the task id', () => {
    expect(taskOutputDir('t1', 'exp/a')).toBe('t1/exp/a');
  });

  it('gives two tasks asking for the same folder two disjoint folders', () => {
    const a = taskOutputDir('t1', 'shared');
    const b = taskOutputDir('t2', 'shared');
    expect(a).not.toBe(b);
    expect(b.startsWith(`${a}/`) || a.startsWith(`${b}/`)).toBe(false);
    // even when one asks for a path that looks like the other's folder
    const c = taskOutputDir('t3', 't1/shared');
    expect(c.startsWith(`${a}/`) || c === a).toBe(false);
  });

  it('refuses an id that could name a nested folder', () => {
    expect(() => taskOutputDir('a/b')).toThrow();
    expect(() => taskOutputDir('')).toThrow();
  });
});
