// Fair share converges: two users of equal weight, one keeping twenty tasks queued and the other
// three, each get half the GPU time over a long run (50 % ± 10 %), through the real commands,
// store logic and policy on the in-memory store, in virtual time. A policy that ignores who
// submitted (plain FIFO) gives the busy user most of it: the check can fail.
import { describe, expect, it } from 'vitest';
import {
  accountsFrom,
  runsOf,
  backfillPolicy,
  DEFAULT_FAIR_SHARE_HALF_LIFE_MS,
  DEFAULT_RESOURCES,
  uniformInventory,
  type SchedulingPolicy,
  type TaskRecord,
  type TaskSpec,
} from '@trainyard/domain';
import { TaskCommands } from '@trainyard/store';
import { MemoryDb } from './memory-repo';
import { SIM_TRAINING_CONFIG } from './world';

const MIN = 60_000;

async function gpuTimeShares(policy: SchedulingPolicy): Promise<Record<string, number>> {
  let clock = Date.parse('2026-12-04T00:00:00Z');
  const db = new MemoryDb(uniformInventory(4), () => clock);
  const commands = new TaskCommands(db.transaction, {
    runnerId: 'fair',
    policy,
    now: () => clock,
    accounts: () => accountsFrom(runsOf(db.tasks.values()), [], clock, DEFAULT_FAIR_SHARE_HALF_LIFE_MS),
  });
  const backlog: Record<string, number> = { busy: 20, light: 3 };
  const queued: Record<string, number> = { busy: 0, light: 0 };
  const ends: { at: number; task: TaskRecord }[] = [];
  const gpuMs: Record<string, number> = { busy: 0, light: 0 };
  const measureFrom = clock + 24 * 60 * MIN;
  let n = 0;
  const spec = (owner: string): TaskSpec => ({
    name: `${owner}-${n}`,
    model: 'm-0.5B',
    datasetPath: '/d.jsonl',
    outputDir: `out/${n}`,
    timeoutMs: 40 * MIN,
    resources: { ...DEFAULT_RESOURCES },
    owner,
    config: SIM_TRAINING_CONFIG,
  });
  const start = async (t: TaskRecord) => {
    queued[t.spec.owner]!--;
    await commands.execute(t.id, { type: 'recordSpawn', pid: 1000 + n, startTime: '1', runDir: `/runs/${t.id}` }, { actor: 'runner' });
    await commands.execute(t.id, { type: 'startTraining' }, { actor: 'trainer' });
    // Run times differ a little so the two users' tasks interleave.
    ends.push({ at: clock + (15 + (n % 7) * 2) * MIN, task: t });
  };
  const topUp = async () => {
    for (const owner of ['busy', 'light'])
      while (queued[owner]! < backlog[owner]!) {
        queued[owner]!++;
        const r = await commands.submit(`t${++n}`, spec(owner), { actor: owner });
        for (const t of r.started) await start(t);
      }
  };
  await topUp();
  for (let done = 0; done < 600; done++) {
    ends.sort((a, b) => a.at - b.at);
    const e = ends.shift()!;
    clock = e.at;
    const startedAt = Date.parse(db.tasks.get(e.task.id)!.startedAt!);
    gpuMs[e.task.spec.owner]! += Math.max(0, clock - Math.max(startedAt, measureFrom));
    const r = await commands.execute(e.task.id, { type: 'recordExit', exitCode: 0, signal: null }, { actor: 'runner' });
    for (const t of r.started) await start(t);
    await topUp();
  }
  const total = gpuMs.busy! + gpuMs.light!;
  return { busy: gpuMs.busy! / total, light: gpuMs.light! / total };
}

describe('fair share (two users of equal weight, one with seven times the queued work)', () => {
  it('each gets half the GPU time, within 10 points', async () => {
    const shares = await gpuTimeShares(backfillPolicy);
    expect(shares.light).toBeGreaterThan(0.4);
    expect(shares.light).toBeLessThan(0.6);
  });
  it('a policy that ignores who submitted (plain FIFO) fails it', async () => {
    const fifo: SchedulingPolicy = {
      name: 'ignores owners (planted bug)',
      schedule: (input) => backfillPolicy.schedule({ ...input, queue: input.queue.map(({ owner: _owner, ...q }) => q) }),
    };
    const shares = await gpuTimeShares(fifo);
    expect(shares.light).toBeLessThan(0.4);
  });
});
