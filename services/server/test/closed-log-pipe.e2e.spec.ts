// The service's stdout and stderr are pipes whose reader goes away (`npm start | head`, a
// supervisor that died). Writes then fail with EPIPE; the service must drop those lines, keep
// answering, not spin on the failed writes, and still stop on SIGTERM or SIGINT.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { eventually, simulated, startServer, type RunningServer } from './harness';

/** CPU time (user + system, in clock ticks) the process has used so far, from /proc/<pid>/stat. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** `p`, or a failure saying the service stopped answering (a wedged service never answers). */
function answered<T>(p: Promise<T>, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer to ${what} in 30 s: the service is wedged`)), 30_000);
    p.then(resolve, reject).finally(() => clearTimeout(timer));
  });
}

/** CPU ticks the server spends answering a fixed set of requests (no clock involved). */
async function cpuForRequests(s: RunningServer, rounds: number): Promise<number> {
  const before = cpuTicks(s.proc.pid!);
  for (let i = 0; i < rounds; i++) {
    expect(await answered(s.client.system.ping.query(), 'system.ping')).toMatchObject({ ok: true });
    await answered(s.client.tasks.list.query({}), 'tasks.list');
  }
  return cpuTicks(s.proc.pid!) - before;
}

/**
 * Runs a long task and cancels it while it trains: the runner logs the stop on stdout and, for a
 * trainer that ignores SIGTERM, the SIGKILL after the grace period on stderr.
 */
async function cancelWhileTraining(s: RunningServer, name: string, ignoreSigterm: boolean): Promise<void> {
  const t = await s.client.tasks.create.mutate(simulated({ steps: 200, stepMs: 50, logLinesPerStep: 1, ignoreSigterm }, { name }));
  await eventually(async () => (await s.client.tasks.get.query({ id: t.id })).status === 'TRAINING', `${name} to train`);
  await s.client.tasks.cancel.mutate({ id: t.id });
  await eventually(async () => (await s.client.tasks.get.query({ id: t.id })).status === 'CANCELLED', `${name} to be cancelled`);
}

/** How the process ended, or 'still running' if it has not within the harness's start-up wait. */
function exitOf(s: RunningServer): Promise<{ code: number | null; signal: NodeJS.Signals | null } | 'still running'> {
  const { proc } = s;
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode });
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('still running'), 60_000);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`a closed log pipe on ${backend.kind}`, () => {
    let s: RunningServer | undefined;
    afterEach(async () => {
      await s?.dispose();
      s = undefined;
    });

    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      it(`keeps serving without spinning, then stops on ${signal}`, async () => {
        s = await startServer({ backend, env: { TRAINYARD_KILL_GRACE_MS: '100' } });
        const rounds = 150;
        const baseline = await cpuForRequests(s, rounds);

        // The reading side goes away: every later write by the service fails with EPIPE.
        s.proc.stdout!.destroy();
        s.proc.stderr!.destroy();

        await cancelWhileTraining(s, 'stops-on-sigterm', false);
        await cancelWhileTraining(s, 'ignores-sigterm', true);

        // The service did log meanwhile, and dropped those lines instead of writing them.
        const metrics = await answered(
          fetch(`${s.url}/metrics`).then((r) => r.text()),
          'GET /metrics',
        );
        expect(Number(/^trainyard_log_lines_dropped_total\{stream="stdout"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
        expect(Number(/^trainyard_log_lines_dropped_total\{stream="stderr"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);

        // Still answering, and not burning CPU on failed writes: the same requests cost about
        // what they did before (a spin of failed writes uses a whole core for as long as it runs).
        const after = await cpuForRequests(s, rounds);
        expect(after, `CPU ticks for ${rounds} rounds: ${after} after the pipe closed, ${baseline} before`).toBeLessThanOrEqual(
          baseline * 3 + 50,
        );

        s.proc.kill(signal);
        const exit = await exitOf(s);
        expect(exit).toEqual({ code: 0, signal: null });
      });
    }
  });
}
