// The cache update the live feed applies to the task list.
import { describe, expect, it } from 'vitest';
import type { Task } from './api';
import { upsertTask } from './live';

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
