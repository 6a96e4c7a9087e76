// Warm trainers in the real service: while a task is queued behind a running one, a trainer is
// started ahead of need in standby and takes the queued task when the slot frees; one that dies
// while waiting costs only a cold start (the task still runs); one is retired when nothing is
// queued any more. Real server, real shepherds and simulated trainers; no timing assertions.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { backendAvailable, backends } from '@trainyard/store/testing';
import type { TrainyardClient } from '@trainyard/client';
import { eventually, simulated, startServer, type RunningServer } from './harness';
import { scanProcesses } from './torture/procs';

/** Trainers waiting in standby for this service: TRAINYARD_STANDBY=1, their shepherd still in the runs folder (not handed a run). */
function waitingWarmTrainers(dataDir: string): number[] {
  const runs = join(dataDir, 'runs');
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (!readFileSync(`/proc/${e}/environ`, 'utf8').split('\0').includes('TRAINYARD_STANDBY=1')) continue;
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state === 'Z' || readlinkSync(`/proc/${ppid}/cwd`) !== runs) continue;
      out.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

async function finished(c: TrainyardClient, id: string) {
  return eventually(
    async () => {
      const t = await c.tasks.get.query({ id });
      return ['COMPLETED', 'FAILED', 'CANCELLED'].includes(t.status) ? t : null;
    },
    `task ${id} to end`,
    90_000,
  );
}

async function logText(c: TrainyardClient, id: string): Promise<string> {
  const page = await c.tasks.logs.query({ id, afterSeq: 0, limit: 1000 });
  return page.lines.map((l: { line: string }) => l.line).join('\n');
}

const trainerFile = (runDir: string) => JSON.parse(readFileSync(join(runDir, 'trainer.json'), 'utf8')) as { pid: number; warm?: boolean };

const backend = backends().find((b) => b.kind === 'postgres')!;
describe.skipIf(!backendAvailable(backend))('warm trainers in the service', () => {
  let s: RunningServer | undefined;
  afterEach(async () => {
    await s?.dispose();
    s = undefined;
  });

  it('a warm trainer waits while a task is queued and takes it when the slot frees', { timeout: 120_000 }, async () => {
    s = await startServer({ backend, env: { TRAINYARD_GPU_SLOTS: '1' } });
    const c = s.client;
    await c.tasks.create.mutate(simulated({ steps: 60, stepMs: 100 }, { name: 'running' }));
    const next = await c.tasks.create.mutate(simulated({ steps: 20, stepMs: 100 }, { name: 'next' }));
    expect(next.status).toBe('QUEUED');
    const [warmPid] = await eventually(async () => {
      const w = waitingWarmTrainers(s!.dataDir);
      return w.length ? w : null;
    }, 'a warm trainer waiting');
    // Handed its task, the warm trainer is that task's trainer for the specs' process scan too
    // (which cleans up after every spec): trainer.json names it.
    await eventually(
      async () => scanProcesses([s!.dataDir]).some((p) => p.kind === 'trainer' && p.pid === warmPid && p.taskId === next.id),
      'the warm trainer counted as the task trainer',
      60_000,
      20,
    );
    const done = await finished(c, next.id);
    expect(done.status, done.error?.message).toBe('COMPLETED');
    expect(trainerFile(done.trainer!.runDir)).toMatchObject({ pid: warmPid, warm: true });
    expect(await logText(c, next.id)).toContain(`standby: assigned task ${next.id}`);
    // Nothing queued any more: no trainer waits (the standby after the last launch is a plain shepherd).
    await eventually(async () => waitingWarmTrainers(s!.dataDir).length === 0, 'no warm trainer once nothing is queued');
  });

  it('a warm trainer that dies while waiting costs only a cold start: the queued task still runs', { timeout: 120_000 }, async () => {
    s = await startServer({ backend, env: { TRAINYARD_GPU_SLOTS: '1' } });
    const c = s.client;
    await c.tasks.create.mutate(simulated({ steps: 60, stepMs: 100 }, { name: 'running' }));
    const next = await c.tasks.create.mutate(simulated({ steps: 2, stepMs: 10 }, { name: 'next' }));
    const [warmPid] = await eventually(async () => {
      const w = waitingWarmTrainers(s!.dataDir);
      return w.length ? w : null;
    }, 'a warm trainer waiting');
    process.kill(warmPid!, 'SIGKILL');
    const done = await finished(c, next.id);
    expect(done.status, done.error?.message).toBe('COMPLETED');
    const trainer = trainerFile(done.trainer!.runDir);
    expect(trainer.pid).not.toBe(warmPid);
    expect(trainer.warm).toBeUndefined();
  });

  it('a warm trainer is retired when the queue empties without a launch (the queued task cancelled)', { timeout: 120_000 }, async () => {
    s = await startServer({ backend, env: { TRAINYARD_GPU_SLOTS: '1' } });
    const c = s.client;
    const running = await c.tasks.create.mutate(simulated({ steps: 200, stepMs: 100 }, { name: 'running' }));
    const next = await c.tasks.create.mutate(simulated({ steps: 2, stepMs: 10 }, { name: 'next' }));
    await eventually(async () => waitingWarmTrainers(s!.dataDir).length > 0, 'a warm trainer waiting');
    await c.tasks.cancel.mutate({ id: next.id });
    await eventually(async () => waitingWarmTrainers(s!.dataDir).length === 0, 'the warm trainer retired', 60_000);
    await eventually(async () => s!.output.some((l) => l.includes('warm trainer retired (nothing queued)')), 'the retirement in the log');
    await c.tasks.cancel.mutate({ id: running.id });
  });
});
