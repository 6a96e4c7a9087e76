// What a transaction that frees a device reads before it commits, through the real commands on
// the in-memory store. After a pass that placed tasks, the next pass is read for (the devices,
// the top queued priority) only where it could find something: a device with room, or a queued
// task that may preempt a running one. Otherwise the last assignment's write goes out with the
// COMMIT, and the devices are read once.
import { describe, expect, it } from 'vitest';
import { DEFAULT_RESOURCES, uniformInventory, type TaskPriority, type TaskRecord, type TaskSpec } from '@trainyard/domain';
import { TaskCommands, type TaskStoreOptions, type TransactionRunner } from '@trainyard/store';
import { MemoryDb } from './memory-repo';
import { SIM_TRAINING_CONFIG } from './world';

const HIGH: TaskPriority = { name: 'high', value: 10 };

function world(gpus: number, opts: Partial<TaskStoreOptions> = {}) {
  const db = new MemoryDb(uniformInventory(gpus), () => Date.parse('2026-12-04T00:00:00Z'));
  let deviceReads = 0;
  // The same transactions, counting the reads of the devices.
  const counting: TransactionRunner = (fn) =>
    db.transaction((repo) =>
      fn({
        ...repo,
        listDevices: () => {
          deviceReads++;
          return repo.listDevices();
        },
      }),
    );
  const commands = new TaskCommands(counting, { runnerId: 'r', ...opts });
  let n = 0;
  const spec = (priority?: TaskPriority, gpus = 1): TaskSpec => ({
    name: `t${++n}`,
    model: 'm-0.5B',
    datasetPath: '/d.jsonl',
    outputDir: `out/${n}`,
    timeoutMs: 3_600_000,
    resources: { ...DEFAULT_RESOURCES, gpus },
    owner: 'u',
    config: SIM_TRAINING_CONFIG,
    ...(priority ? { priority } : {}),
  });
  return {
    db,
    submit: async (id: string, priority?: TaskPriority, gpus?: number) => commands.submit(id, spec(priority, gpus), { actor: 'u' }),
    /** The devices read while `fn` ran. */
    reads: async <T>(fn: () => Promise<T>): Promise<{ result: T; deviceReads: number }> => {
      const before = deviceReads;
      const result = await fn();
      return { result, deviceReads: deviceReads - before };
    },
    exit: (id: string) => commands.execute(id, { type: 'recordExit', exitCode: 0, signal: null }, { actor: 'runner' }),
  };
}

const ids = (tasks: readonly TaskRecord[]) => tasks.map((t) => t.id);

describe('the reads of a transaction that frees a device', () => {
  it.each([
    ['', {}],
    [', with preemption and no queued task that outranks a running one', { preemption: { maxPreemptions: 3 } }],
  ] as const)(
    'given one GPU and two queued tasks%s, when the running one exits, the next starts and the devices are read once',
    async (_, opts) => {
      const w = world(1, opts);
      await w.submit('a');
      await w.submit('b');
      await w.submit('c');
      const { result, deviceReads } = await w.reads(() => w.exit('a'));
      expect(ids(result.started)).toEqual(['b']);
      expect(deviceReads).toBe(1);
      expect(w.db.tasks.get('c')!.status).toBe('QUEUED');
    },
  );

  it('given two GPUs held by one task and one queued task, when it exits, the devices are read again: one still has room', async () => {
    const w = world(2);
    await w.submit('a', undefined, 2);
    await w.submit('c');
    const { result, deviceReads } = await w.reads(() => w.exit('a'));
    expect(ids(result.started)).toEqual(['c']);
    expect(deviceReads).toBe(2);
  });

  it('given preemption and a running task a queued one outranks, the devices are read again: the next pass may preempt it', async () => {
    const w = world(2, { preemption: { maxPreemptions: 3 } });
    await w.submit('a');
    await w.submit('low');
    await w.submit('h1', HIGH);
    await w.submit('h2', HIGH);
    const { result, deviceReads } = await w.reads(() => w.exit('a'));
    expect(ids(result.started)).toContain('h1');
    expect(deviceReads).toBeGreaterThanOrEqual(2);
  });
});
