// The Slurm edge against the live single-node cluster of infra/slurm-up.sh (4 GPUs declared):
// runs handed to Slurm leave the shepherd's files in their run folders, states are read in one
// batch, GPUs are what jobs wait for, cancel and failure end jobs, and a controller that does not
// answer is an unanswered poll, not dead jobs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { judgeSlurmPoll, viewSlurmJob, type SlurmVerdict } from '@trainyard/domain/slurm';
import { skipLoudlyOrFail } from '@trainyard/store/testing';
import { readExit, readOutputLines } from '../trainer/run-folder';
import { JOB_SCRIPT, prepareSlurmRun, SlurmCli, SlurmWatcher, type SlurmOptions } from './slurm';
import { slurmMissing, takeSlurmCluster } from '../../test/slurm-cluster';

const missing = slurmMissing();
if (missing) skipLoudlyOrFail(`${missing}: the Slurm executor's specs cannot run`, 'bash infra/slurm-up.sh');

// Other spec files use the same cluster: take it in turn (see slurm-cluster.ts).
let releaseCluster = (): void => {};
beforeAll(async () => {
  if (missing === null) releaseCluster = await takeSlurmCluster();
}, 25 * 60_000);
afterAll(() => releaseCluster());

const cli = new SlurmCli();
const SLURM_UP = join(import.meta.dirname, '../../../../infra/slurm-up.sh');
const opts: SlurmOptions = { extraArgs: [] };

describe.skipIf(missing !== null)('Slurm executor edge, live cluster', () => {
  let root: string;
  const submitted: string[] = [];

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'trainyard-slurm-'));
  });
  afterAll(async () => {
    // Nothing of ours is left running on the shared cluster.
    for (const id of submitted) await cli.cancel(id).catch(() => {});
    rmSync(root, { recursive: true, force: true });
  });

  /** Submits a run whose trainer is `node -e <code>`. */
  async function submit(name: string, code: string, gpus = 1): Promise<{ jobId: string; runDir: string }> {
    const runDir = join(root, name);
    const script = await prepareSlurmRun({ runDir, argv: [process.execPath, '-e', code], env: {}, cwd: root });
    const jobId = await cli.submit({ taskId: name, runDir, gpus, timeoutMs: 120_000, checkpointWarningS: 10 }, opts, script);
    console.log(`sbatch: ${name} is Slurm job ${jobId}`);
    submitted.push(jobId);
    return { jobId, runDir };
  }

  async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 45_000): Promise<T> {
    const end = Date.now() + ms;
    for (;;) {
      const v = await probe();
      if (v !== undefined) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  const viewOf = async (jobId: string) => {
    const poll = await cli.poll([jobId]);
    const seen = poll.ok ? poll.jobs.get(jobId) : undefined;
    return seen ? viewSlurmJob(seen.state, seen.reason) : undefined;
  };
  const ended = (jobId: string) =>
    until(`job ${jobId} to end`, async () => {
      const v = await viewOf(jobId);
      return v?.phase === 'ended' ? v : undefined;
    });

  it('a run handed to Slurm leaves the same run-folder files as a local run, with its GPUs', async () => {
    const { jobId, runDir } = await submit(
      'files',
      `console.log(JSON.stringify({ type: 'phase', phase: 'training' })); console.log('gpus=' + process.env.CUDA_VISIBLE_DEVICES);`,
      2,
    );
    expect(await ended(jobId)).toMatchObject({ end: 'completed' });
    const exit = await until('exit.json', () => readExit(runDir).then((e) => e ?? undefined));
    expect(exit).toMatchObject({ code: 0, signal: null });
    const lines = readFileSync(join(runDir, 'output.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { line: string }).line);
    expect(lines).toEqual(['{"type":"phase","phase":"training"}', expect.stringMatching(/^gpus=\d,\d$/)]);
    expect(readFileSync(join(runDir, JOB_SCRIPT), 'utf8')).toMatch(/^#!\//);
  });

  it("the job holds none of the service's secrets: not the batch step (the shepherd, whose environment the trainer can read), not the trainer", async () => {
    // sbatch hands the job the environment it runs with (Slurm's --export=ALL), and slurmctld keeps it with the job.
    const secrets = {
      PGPASSWORD: 'pg-secret-5u7',
      HF_TOKEN: 'hf-secret-5u7',
      AWS_SECRET_ACCESS_KEY: 'aws-secret-5u7',
      DATABASE_URL: 'postgres://svc:db-secret-5u7@127.0.0.1/test',
      TRAINYARD_TOKEN: 'ty_secret-5u7',
    };
    const service = new SlurmCli({ env: { ...process.env, ...secrets } });
    const runDir = join(root, 'secrets');
    const code = [
      "const fs = require('node:fs');",
      "const parent = fs.readFileSync('/proc/' + process.ppid + '/environ', 'utf8').split('\\0').filter(Boolean);",
      "console.log('parent ' + JSON.stringify(parent));",
      "console.log('own ' + JSON.stringify(Object.entries(process.env).map(([k, v]) => k + '=' + v)));",
    ].join(' ');
    const script = await prepareSlurmRun({
      runDir,
      argv: [process.execPath, '-e', code],
      env: { PATH: process.env.PATH ?? '' },
      cwd: root,
    });
    const jobId = await service.submit({ taskId: 'secrets', runDir, gpus: 1, timeoutMs: 120_000, checkpointWarningS: 10 }, opts, script);
    submitted.push(jobId);
    expect(await ended(jobId)).toMatchObject({ end: 'completed' });
    const lines = readFileSync(join(runDir, 'output.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { line: string }).line);
    const envOf = (prefix: string) => JSON.parse(lines.find((l) => l.startsWith(`${prefix} `))!.slice(prefix.length + 1)) as string[];
    const parent = envOf('parent');
    const own = envOf('own');
    // What they must still have: Slurm's job variables (the batch step) and the GPUs (the trainer).
    expect(parent.some((v) => v.startsWith('SLURM_JOB_ID='))).toBe(true);
    expect(own.some((v) => v.startsWith('CUDA_VISIBLE_DEVICES='))).toBe(true);
    for (const [name, value] of Object.entries(secrets)) {
      expect(parent.join('\n'), `${name} in the batch step`).not.toContain(value);
      expect(own.join('\n'), `${name} in the trainer`).not.toContain(value);
    }
  });

  it('three 2-GPU runs on the 4-GPU node: two run, one waits with Slurm’s reason, all complete; read in one batch', async () => {
    // Each holds its GPUs until its release file appears.
    const jobs = [];
    for (const name of ['a', 'b', 'c']) {
      const release = join(root, `release-${name}`);
      jobs.push({
        release,
        ...(await submit(
          `three-${name}`,
          `const fs = require('node:fs'); const t = setInterval(() => { if (fs.existsSync(${JSON.stringify(release)})) { clearInterval(t); console.log('done'); } }, 100);`,
          2,
        )),
      });
    }
    const ids = jobs.map((j) => j.jobId);
    const phases = await until('two running and one pending', async () => {
      const verdicts = judgeSlurmPoll(ids, await cli.poll(ids));
      const ps = verdicts.map((v) => v.view.phase);
      return ps.filter((p) => p === 'running').length === 2 && ps.includes('pending') ? verdicts : undefined;
    });
    const waiting = phases.find((v) => v.view.phase === 'pending')!;
    expect(waiting.view).toEqual({ phase: 'pending', reason: expect.stringMatching(/^(Resources|Priority)$/) });
    for (const j of jobs) writeFileSync(j.release, '');
    for (const j of jobs) {
      expect(await ended(j.jobId)).toMatchObject({ end: 'completed' });
      expect(await readExit(j.runDir)).toMatchObject({ code: 0 });
    }
  });

  it('cancel ends a running job: its trainer gets SIGTERM, Slurm says CANCELLED', async () => {
    const { jobId, runDir } = await submit('cancel', `console.log('up'); setInterval(() => {}, 1000);`);
    await until('the trainer to start', async () =>
      (await viewOf(jobId))?.phase === 'running' && trainerStarted(runDir) ? true : undefined,
    );
    await cli.cancel(jobId);
    expect(await ended(jobId)).toMatchObject({ end: 'cancelled' });
    expect(await until('exit.json', () => readExit(runDir).then((e) => e ?? undefined))).toMatchObject({ signal: 'SIGTERM' });
  });

  it("Slurm's checkpoint warning (USR1 to the batch step) reaches the trainer", async () => {
    const { jobId, runDir } = await submit(
      'warn',
      `process.on('SIGUSR1', () => { console.log('checkpoint asked'); process.exit(0); }); console.log('up'); setInterval(() => {}, 1000);`,
    );
    // Its handler is in place once it says 'up' (a USR1 before that would start Node's inspector
    // instead: the trainer would run on to its time limit).
    await until('the trainer to be up', async () =>
      (await viewOf(jobId))?.phase === 'running' && readOutputLines(runDir).some((l) => l.line === 'up') ? true : undefined,
    );
    // What --signal=B:USR1@<s> does before the time limit, sent now.
    execFileSync('scancel', ['--batch', '--signal=USR1', jobId]);
    expect(await ended(jobId)).toMatchObject({ end: 'completed' });
    expect(readFileSync(join(runDir, 'output.jsonl'), 'utf8')).toContain('checkpoint asked');
  });

  it('a trainer that fails: Slurm says FAILED, the shepherd has its exit code', async () => {
    const { jobId, runDir } = await submit('fail', `console.error('boom'); process.exit(3);`);
    expect(await ended(jobId)).toMatchObject({ end: 'failed', reason: 'NonZeroExitCode' });
    expect(await readExit(runDir)).toMatchObject({ code: 3 });
  });

  it('slurmctld stopped and started again mid-run: nothing is concluded while it is away, and the job’s end is seen after', async () => {
    const release = join(root, 'release-restart');
    const { jobId, runDir } = await submit(
      'restart',
      `const fs = require('node:fs'); const t = setInterval(() => { if (fs.existsSync(${JSON.stringify(release)})) { clearInterval(t); console.log('done'); } }, 100);`,
    );
    const verdicts: SlurmVerdict[] = [];
    let unanswered = 0;
    const watcher = new SlurmWatcher(new SlurmCli({ timeoutMs: 1500 }), (v) => void verdicts.push(...v), {
      baseMs: 200,
      maxMs: 1000,
      unreachable: () => unanswered++,
    });
    try {
      watcher.watch(jobId);
      await until('the job to run', async () =>
        verdicts.some((v) => v.view.phase === 'running') && trainerStarted(runDir) ? true : undefined,
      );
      const pid = Number(readFileSync('/run/slurm/slurmctld.pid', 'utf8'));
      process.kill(pid, 'SIGTERM');
      await until('slurmctld to stop', async () => (isAlive(pid) ? undefined : true));
      await until('two unanswered rounds', async () => (unanswered >= 2 ? true : undefined));
      // The trainer ends while the controller is away.
      writeFileSync(release, '');
      await until('exit.json', () => readExit(runDir).then((e) => e ?? undefined));
      const before = unanswered;
      await until('another unanswered round', async () => (unanswered > before ? true : undefined));
      expect(verdicts.filter((v) => v.view.phase === 'ended')).toEqual([]);
      execFileSync('bash', [SLURM_UP], { stdio: 'pipe' });
      const end = await until('the end, seen once slurmctld is back', async () => verdicts.find((v) => v.view.phase === 'ended'));
      expect(end.view).toMatchObject({ end: 'completed' });
      expect(await readExit(runDir)).toMatchObject({ code: 0 });
    } finally {
      watcher.close();
      execFileSync('bash', [SLURM_UP], { stdio: 'pipe' });
    }
  });

  it('a controller that does not answer is an unanswered poll, not dead jobs', async () => {
    const conf = join(root, 'unreachable.conf');
    // The cluster's configuration with the controller at a port nobody listens on.
    writeFileSync(
      conf,
      readFileSync('/etc/slurm/slurm.conf', 'utf8').replace(/^SlurmctldHost=.*$/m, (l) => `${l}\nSlurmctldPort=9`),
    );
    const away = new SlurmCli({ env: { ...process.env, SLURM_CONF: conf }, timeoutMs: 2000 });
    const poll = await away.poll(['1', '2']);
    expect(poll.ok).toBe(false);
    expect(judgeSlurmPoll(['1', '2'], poll).map((v) => v.view.phase)).toEqual(['unknown', 'unknown']);
    expect(await away.ping()).toMatchObject({ reachable: false });
    expect(await cli.ping()).toMatchObject({ reachable: true });
  });
});

/** trainer.json is there (the shepherd started the trainer). */
function trainerStarted(runDir: string): boolean {
  try {
    readFileSync(join(runDir, 'trainer.json'));
    return true;
  } catch {
    return false;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
