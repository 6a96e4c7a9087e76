// The service is SIGKILLed while a task trains and others queue. After a restart the training
// task is re-attached (same trainer process) and completes, the queue carries on, and the log
// shows everything exactly once.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { eventually, REPO_ROOT, simulated, startServer, type RunningServer } from './harness';
import type { TrainyardClient } from '@trainyard/client';
import { findShepherds } from '../src/trainer/proc';

const run = promisify(execFile);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Standby shepherds (`shepherd.mjs --standby`) whose parent is `parent`, from /proc. */
function standbysOf(parent: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      const at = argv.findIndex((a) => a.endsWith('shepherd.mjs'));
      if (at < 0 || argv[at + 1] !== '--standby') continue;
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state !== 'Z' && Number(ppid) === parent) out.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

async function statusOf(c: TrainyardClient, id: string) {
  return (await c.tasks.get.query({ id })).status;
}

async function allLogs(c: TrainyardClient, id: string) {
  const out = [];
  let after = 0;
  for (;;) {
    const page = await c.tasks.logs.query({ id, afterSeq: after, limit: 1000, includeProtocol: true });
    out.push(...page.lines);
    if (!page.hasMore) return out;
    after = page.nextSeq;
  }
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`crash recovery on ${backend.kind}`, () => {
    let s: RunningServer | undefined;
    afterEach(async () => {
      await s?.dispose();
      s = undefined;
    });

    it('SIGKILL while training: re-attached, completes, the queue continues, the log has it all once', async () => {
      s = await startServer({ backend });
      const c1 = s.client;
      const long = await c1.tasks.create.mutate(simulated({ steps: 25, stepMs: 120, logLinesPerStep: 1 }, { name: 'long' }));
      const q1 = await c1.tasks.create.mutate(simulated({ steps: 3, stepMs: 30 }, { name: 'q1' }));
      const q2 = await c1.tasks.create.mutate(simulated({ steps: 3, stepMs: 30 }, { name: 'q2' }));
      expect([long.status, q1.status, q2.status]).toEqual(['PREPARING', 'QUEUED', 'QUEUED']);
      const training = await eventually(async () => {
        const t = await c1.tasks.get.query({ id: long.id });
        return t.status === 'TRAINING' && t.progress.step !== null ? t : null;
      }, 'the long task to train');
      const pid = training.trainer!.pid;

      await s.stop('SIGKILL');
      expect(alive(pid)).toBe(true); // the trainer outlives the service

      s = await s.restart();
      const c2 = s.client;
      await eventually(async () => (await statusOf(c2, long.id)) === 'COMPLETED', 'the re-attached task to complete');
      await eventually(async () => (await statusOf(c2, q2.id)) === 'COMPLETED', 'the queue to drain');

      const [a, b, c] = await Promise.all([long.id, q1.id, q2.id].map((id) => c2.tasks.get.query({ id })));
      expect(a!.trainer!.pid).toBe(pid); // re-attached, never spawned twice
      expect(Date.parse(b!.startedAt!)).toBeGreaterThanOrEqual(Date.parse(a!.finishedAt!));
      expect(Date.parse(c!.startedAt!)).toBeGreaterThanOrEqual(Date.parse(b!.finishedAt!));

      const events = (await c2.events.list.query({ taskId: long.id, limit: 1000 })).events.map((e) => e.type);
      expect(events.filter((t) => t === 'TrainerSpawned')).toHaveLength(1);
      expect(events.filter((t) => t === 'TaskCompleted')).toHaveLength(1);
      expect(events.at(-1)).toBe('TaskCompleted');

      const logs = await allLogs(c2, long.id);
      expect(logs.map((l) => l.seq)).toEqual(logs.map((_, i) => i + 1)); // in order, no gap, no duplicate
      expect(logs.filter((l) => l.line.includes('"type":"progress"')).length).toBe(25);
    });

    it('SIGKILL with a standby shepherd waiting: it exits with the service (no orphan); after the restart tasks run as before', async () => {
      s = await startServer({ backend });
      const first = await s.client.tasks.create.mutate(simulated({ steps: 2, stepMs: 20 }));
      await eventually(async () => (await statusOf(s!.client, first.id)) === 'COMPLETED', 'the first task to complete');
      // After a launch the runner keeps the next launch's shepherd started and waiting.
      const standbys = await eventually(async () => {
        const found = standbysOf(s!.proc.pid!);
        return found.length ? found : null;
      }, 'a standby shepherd');
      await s.stop('SIGKILL');
      await eventually(async () => standbys.every((pid) => !alive(pid)), 'the standby to exit with its service', 15_000);

      s = await s.restart();
      const a = await s.client.tasks.create.mutate(simulated({ steps: 2, stepMs: 20 }));
      const b = await s.client.tasks.create.mutate(simulated({ steps: 2, stepMs: 20 }));
      await eventually(async () => (await statusOf(s!.client, b.id)) === 'COMPLETED', 'both tasks to complete');
      expect(await statusOf(s.client, a.id)).toBe('COMPLETED');
      const events = (await s.client.events.list.query({ taskId: b.id, limit: 1000 })).events.map((e) => e.type);
      expect(events.filter((t) => t === 'TrainerSpawned')).toHaveLength(1);
    });

    it('a trainer that ended while the service was down is settled with its real exit status', async () => {
      s = await startServer({ backend });
      const t = await s.client.tasks.create.mutate(simulated({ steps: 6, stepMs: 150, failAtStep: 5, exitCode: 7 }));
      const running = await eventually(async () => {
        const x = await s!.client.tasks.get.query({ id: t.id });
        return x.trainer ? x : null;
      }, 'the trainer to be spawned');
      await s.stop('SIGKILL');
      await eventually(async () => !alive(running.trainer!.pid), 'the trainer to exit on its own');
      s = await s.restart();
      const failed = await eventually(async () => {
        const x = await s!.client.tasks.get.query({ id: t.id });
        return x.status === 'FAILED' ? x : null;
      }, 'the task to be settled');
      expect(failed.error).toMatchObject({ reason: 'exit', exitCode: 7 });
      expect(failed.error!.message).toMatch(/Traceback|Error/);
    });

    it('a trainer that completed while the service was down: its last reports and its exit are recorded in one transaction', async () => {
      s = await startServer({ backend });
      const t = await s.client.tasks.create.mutate(simulated({ steps: 6, stepMs: 150 }));
      const running = await eventually(async () => {
        const x = await s!.client.tasks.get.query({ id: t.id });
        return x.status === 'TRAINING' ? x : null;
      }, 'the task to be training');
      await s.stop('SIGKILL');
      await eventually(async () => !alive(running.trainer!.pid), 'the trainer to exit on its own');
      s = await s.restart();
      const done = await eventually(async () => {
        const x = await s!.client.tasks.get.query({ id: t.id });
        return x.status === 'COMPLETED' ? x : null;
      }, 'the task to be settled');
      expect(done.artifacts).toHaveLength(1);
      const { events } = await s.client.events.list.query({ taskId: t.id, limit: 1000 });
      // The restart read the trainer's last lines with its exit: its artifact and last progress
      // go in the exit's transaction, in the order of their lines, each by whom it was.
      const last = events.slice(-3).map((e) => [e.type, e.metadata.actor]);
      expect(last).toEqual([
        ['ProgressRecorded', 'trainer'],
        ['ArtifactRecorded', 'trainer'],
        ['TaskCompleted', 'runner'],
      ]);
      if (backend.kind === 'postgres') {
        const sql = postgres(backend.url!, { max: 1, onnotice: () => {} });
        try {
          const rows = await sql<{ type: string; tx: string }[]>`
            SELECT type, transaction_id::text AS tx FROM ${sql(s.schema!)}.events
            WHERE stream_id = ${t.id} ORDER BY position DESC LIMIT 3`;
          expect(new Set(rows.map((r) => r.tx)).size).toBe(1);
        } finally {
          await sql.end();
        }
      }
    });

    it('a trainer that vanished while the service was down fails honestly, and the queue moves on', async () => {
      s = await startServer({ backend });
      const t = await s.client.tasks.create.mutate(simulated({ steps: 100, stepMs: 100 }));
      const next = await s.client.tasks.create.mutate(simulated({ steps: 2, stepMs: 20 }));
      const running = await eventually(async () => {
        const x = await s!.client.tasks.get.query({ id: t.id });
        return x.trainer ? x : null;
      }, 'the trainer to be spawned');
      await s.stop('SIGKILL');
      // The machine "restarted": trainer and shepherd are gone and no exit status was written.
      // The shepherd first (a fresh one named by its argv, or an adopted standby named by
      // shepherd.json), so that it cannot record the trainer's death.
      const runDir = running.trainer!.runDir;
      const shepherds = findShepherds(runDir);
      expect(shepherds.length).toBe(1);
      for (const pid of shepherds) process.kill(pid, 'SIGKILL');
      await eventually(async () => findShepherds(runDir).length === 0, 'the shepherd to be gone');
      process.kill(-running.trainer!.pid, 'SIGKILL');
      await eventually(async () => !alive(running.trainer!.pid), 'the trainer to be gone');
      expect(existsSync(join(runDir, 'exit.json'))).toBe(false);
      s = await s.restart();
      const failed = await eventually(async () => {
        const x = await s!.client.tasks.get.query({ id: t.id });
        return x.status === 'FAILED' ? x : null;
      }, 'the lost task to fail');
      expect(failed.error).toMatchObject({ reason: 'lost' });
      await eventually(async () => (await statusOf(s!.client, next.id)) === 'COMPLETED', 'the next task to run');
    });

    it('rebuild from the log matches the live read models after crashes (npm run rebuild)', async () => {
      s = await startServer({ backend });
      const t = await s.client.tasks.create.mutate(simulated({ steps: 10, stepMs: 100 }));
      await s.client.tasks.create.mutate(simulated({ steps: 2, stepMs: 20 }));
      await eventually(async () => (await statusOf(s!.client, t.id)) === 'TRAINING', 'training');
      s = await s.restart();
      await eventually(
        async () =>
          (await s!.client.queue.get.query()).queuedCount === 0 &&
          (await s!.client.queue.get.query()).devices.every((x) => !x.holders.length),
        'all done',
      );
      await s.stop('SIGTERM');
      const env: Record<string, string> = { ...(process.env as Record<string, string>), TRAINYARD_DATA_DIR: s.dataDir };
      delete env.DATABASE_URL;
      if (backend.kind === 'postgres') Object.assign(env, { DATABASE_URL: backend.url!, TRAINYARD_DB_SCHEMA: s.schema! });
      const out = await run('npm', ['run', '--silent', 'rebuild', '--', '--json'], { cwd: REPO_ROOT, env });
      const report = JSON.parse(out.stdout.trim().split('\n').pop()!);
      expect(report.differences).toEqual([]);
      expect(report.tasks).toBe(2);
    });
  });
}
