// The cache update the live feed applies to the task list.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Task } from './api';
import { coalescedRefresh, upsertTask } from './live';

const task = (id: string, createdAt: string, over: Partial<Task> = {}): Task =>
  ({ id, createdAt, version: 1, deleted: false, status: 'QUEUED', ...over }) as Task;
const list = (...items: Task[]) => ({ items, nextCursor: null });

describe('upsertTask', () => {
  it('inserts a new task in newest-first order', () => {
    const l = list(task('c', '2026-01-01T00:00:03Z'), task('a', '2026-01-01T00:00:01Z'));
    const out = upsertTask(l, task('b', '2026-01-01T00:00:02Z'));
    expect(out.items.map((t) => t.id)).toEqual(['c', 'b', 'a']);
  });

  it('replaces a task with a newer version and ignores an older one', () => {
    const l = list(task('a', '2026-01-01T00:00:01Z', { version: 5, status: 'TRAINING' }));
    expect(upsertTask(l, task('a', '2026-01-01T00:00:01Z', { version: 6, status: 'COMPLETED' })).items[0]!.status).toBe('COMPLETED');
    expect(upsertTask(l, task('a', '2026-01-01T00:00:01Z', { version: 4, status: 'QUEUED' }))).toBe(l);
  });

  it('drops a deleted task and does not add one', () => {
    const l = list(task('a', '2026-01-01T00:00:01Z'));
    expect(upsertTask(l, task('a', '2026-01-01T00:00:01Z', { version: 2, deleted: true })).items).toEqual([]);
    expect(upsertTask(l, task('x', '2026-01-01T00:00:09Z', { deleted: true }))).toBe(l);
  });
});

describe('coalescedRefresh', () => {
  // A refresh that takes `ms` of fake time; counts runs and how many were under way at once.
  const slowRefresh = (ms: number) => {
    const seen = { runs: 0, atOnce: 0, maxAtOnce: 0 };
    const refresh = async () => {
      seen.runs++;
      seen.maxAtOnce = Math.max(seen.maxAtOnce, ++seen.atOnce);
      await new Promise((r) => setTimeout(r, ms));
      seen.atOnce--;
    };
    return { seen, refresh };
  };

  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('runs once, after the delay, for a burst of asks', async () => {
    const { seen, refresh } = slowRefresh(10);
    const c = coalescedRefresh(refresh, 300);
    for (let i = 0; i < 5; i++) c.ask();
    await vi.advanceTimersByTimeAsync(299);
    expect(seen.runs).toBe(0);
    await vi.advanceTimersByTimeAsync(1000);
    expect(seen.runs).toBe(1);
  });

  it('lets a slow refresh finish while asks keep coming, then runs once more for them', async () => {
    // Asks every 250 ms and a refresh of 800 ms: a refresh cancelled by the next ask would never finish.
    const { seen, refresh } = slowRefresh(800);
    const finished: number[] = [];
    const timed = coalescedRefresh(async () => {
      await refresh();
      finished.push(Date.now());
    }, 300);
    for (let t = 0; t < 5000; t += 250) {
      timed.ask();
      await vi.advanceTimersByTimeAsync(250);
    }
    expect(seen.maxAtOnce).toBe(1);
    // Each run finishes (300 ms wait + 800 ms refresh), about one per 1.1 s.
    expect(finished.length).toBeGreaterThanOrEqual(4);
    // The asks that arrived during the last run get one more run after it, and nothing after that.
    const before = seen.runs;
    await vi.advanceTimersByTimeAsync(5000);
    expect(seen.runs).toBe(before + 1);
    await vi.advanceTimersByTimeAsync(5000);
    expect(seen.runs).toBe(before + 1);
  });

  it('drops a pending run when disposed', async () => {
    const { seen, refresh } = slowRefresh(10);
    const c = coalescedRefresh(refresh, 300);
    c.ask();
    c.dispose();
    await vi.advanceTimersByTimeAsync(1000);
    expect(seen.runs).toBe(0);
  });
});
