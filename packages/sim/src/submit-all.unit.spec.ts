// tasks.createMany's store path (TaskCommands.submitAll) on the simulation's in-memory store:
// the same code as on Postgres and PGlite. The order given is the queue's order, and a batch
// whose verify step refuses it leaves the store as it was.
import { describe, expect, it } from 'vitest';
import { DEFAULT_RESOURCES, uniformInventory, type TaskSpec } from '@trainyard/domain';
import { TaskCommands } from '@trainyard/store';
import { MemoryDb } from './memory-repo';
import { SIM_TRAINING_CONFIG } from './world';

const spec = (name: string, idempotencyKey: string | null = null): TaskSpec => ({
  name,
  model: 'm-0.5B',
  datasetPath: '/d.jsonl',
  outputDir: `out/${name}`,
  timeoutMs: 60_000,
  resources: { ...DEFAULT_RESOURCES },
  owner: 'alice',
  config: SIM_TRAINING_CONFIG,
  idempotencyKey,
});

describe('submitAll on the in-memory store', () => {
  const setup = () => {
    const db = new MemoryDb(uniformInventory(1), () => Date.parse('2026-12-05T00:00:00Z'));
    return { db, commands: new TaskCommands(db.transaction, { runnerId: 'sim' }) };
  };

  it('given a free device, when four are submitted together, then the first starts and the rest queue in the order given', async () => {
    const { db, commands } = setup();
    const results = await commands.submitAll(['a', 'b', 'c', 'd'].map((id) => ({ taskId: id, spec: spec(id), meta: { actor: 'alice' } })));
    expect(results.map((r) => r.task.status)).toEqual(['PREPARING', 'QUEUED', 'QUEUED', 'QUEUED']);
    const queued = [...db.tasks.values()]
      .filter((t) => t.status === 'QUEUED')
      .sort((x, y) => Number(x.queuedPosition) - Number(y.queuedPosition));
    expect(queued.map((t) => t.id)).toEqual(['b', 'c', 'd']);
  });

  it('given keys used before, when the same batch comes again, then its tasks come back uncreated', async () => {
    const { db, commands } = setup();
    const batch = (ids: string[]) => ids.map((id, i) => ({ taskId: id, spec: spec(`n${i}`, `k${i}`), meta: { actor: 'alice' } }));
    await commands.submitAll(batch(['a', 'b']));
    const again = await commands.submitAll(batch(['x', 'y']));
    expect(again.map((r) => [r.task.id, r.created])).toEqual([
      ['a', false],
      ['b', false],
    ]);
    expect(db.tasks.size).toBe(2);
  });

  it('given a verify step that refuses the batch, then nothing of it is stored', async () => {
    const { db, commands } = setup();
    const events = db.events.length;
    await expect(
      commands.submitAll([{ taskId: 'a', spec: spec('a'), meta: { actor: 'alice' } }], () => Promise.reject(new Error('refused'))),
    ).rejects.toThrow('refused');
    expect(db.tasks.size).toBe(0);
    expect(db.events.length).toBe(events);
  });
});
