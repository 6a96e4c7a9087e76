// A command decided on the task as its caller last saw it (`execute`'s `known`, what a runner
// passes after its own last command), through the real commands on the in-memory store: while
// that record is current the task is not read; once someone else has written to the task, the
// command is decided again on the task read afresh, with the result it has without `known`.
import { describe, expect, it } from 'vitest';
import { DEFAULT_RESOURCES, uniformInventory, type TaskCommand, type TaskRecord, type TaskSpec } from '@trainyard/domain';
import { TaskCommands, type TransactionRunner } from '@trainyard/store';
import { MemoryDb } from './memory-repo';
import { SIM_TRAINING_CONFIG } from './world';

const EXIT: TaskCommand = { type: 'recordExit', exitCode: 0, signal: null };

/** One GPU, tasks a and b submitted (a placed, b queued), counting the reads of single tasks. */
async function world() {
  const db = new MemoryDb(uniformInventory(1), () => Date.parse('2026-12-04T00:00:00Z'));
  let taskReads = 0;
  const counting: TransactionRunner = (fn) =>
    db.transaction((repo) =>
      fn({
        ...repo,
        loadTask: (id) => {
          taskReads++;
          return repo.loadTask(id);
        },
      }),
    );
  const commands = new TaskCommands(counting, { runnerId: 'r' });
  const spec = (name: string): TaskSpec => ({
    name,
    model: 'm-0.5B',
    datasetPath: '/d.jsonl',
    outputDir: `out/${name}`,
    timeoutMs: 3_600_000,
    resources: { ...DEFAULT_RESOURCES, gpus: 1 },
    owner: 'u',
    config: SIM_TRAINING_CONFIG,
  });
  const placed = (await commands.submit('a', spec('a'), { actor: 'u' })).task;
  await commands.submit('b', spec('b'), { actor: 'u' });
  const run = (command: TaskCommand, known?: TaskRecord) =>
    commands.execute(
      'a',
      command,
      { actor: 'runner' },
      { holder: { runnerId: 'r', attempt: placed.attempt }, ...(known ? { known } : {}) },
    );
  return {
    db,
    placed,
    run,
    /** The single-task reads while `fn` ran. */
    reads: async <T>(fn: () => Promise<T>): Promise<{ result: T; taskReads: number }> => {
      const before = taskReads;
      const result = await fn();
      return { result, taskReads: taskReads - before };
    },
  };
}

/** What a result says, less its times (two worlds run at different moments). */
const outcome = (r: { task: TaskRecord; started: readonly TaskRecord[] }) => ({
  status: r.task.status,
  version: r.task.version,
  stop: r.task.stop,
  error: r.task.error,
  started: r.started.map((t) => t.id),
});

describe("a command decided on the caller's record of the task", () => {
  it('given the record the runner holds after its last command, when the exit is recorded with it, then the task is not read and the result is the same as without it', async () => {
    const known = await world();
    const unknown = await world();
    const spawned = (await known.run({ type: 'recordSpawn', pid: 7, startTime: '1', runDir: '/r' })).task;
    await unknown.run({ type: 'recordSpawn', pid: 7, startTime: '1', runDir: '/r' });

    const withRecord = await known.reads(() => known.run(EXIT, spawned));
    const without = await unknown.reads(() => unknown.run(EXIT));

    expect(withRecord.taskReads).toBe(0);
    expect(without.taskReads).toBe(1);
    expect(outcome(withRecord.result)).toEqual(outcome(without.result));
    expect(withRecord.result.started.map((t) => t.id)).toEqual(['b']);
  });

  it('given a stop asked for since the runner last wrote, when the exit is recorded with the older record, then it is decided on the task read afresh', async () => {
    const known = await world();
    const unknown = await world();
    for (const w of [known, unknown]) {
      await w.run({ type: 'recordSpawn', pid: 7, startTime: '1', runDir: '/r' });
      await w.run({ type: 'cancel', reason: 'asked by u' });
    }
    const stale = known.db.tasks.get('a')!;
    // The record the runner held before the cancel: one version behind.
    const older = { ...stale, version: stale.version - 1, stop: null };

    const withOlder = await known.reads(() => known.run(EXIT, older));
    const without = await unknown.run(EXIT);

    expect(withOlder.taskReads).toBe(1);
    expect(outcome(withOlder.result)).toEqual(outcome(without));
    expect(known.db.tasks.get('a')!.status).toBe(unknown.db.tasks.get('a')!.status);
  });

  it('given a record on which the command looks illegal (still queued), when the runner records its spawn with it, then the spawn is recorded on the task as it is', async () => {
    const w = await world();
    const queued = { ...w.placed, status: 'QUEUED' as const, version: w.placed.version - 1 };

    const result = await w.run({ type: 'recordSpawn', pid: 7, startTime: '1', runDir: '/r' }, queued);

    expect(result.task.trainer?.pid).toBe(7);
    expect(w.db.tasks.get('a')!.version).toBe(result.task.version);
  });
});
