// The Slurm edge: hands a run to Slurm as a batch job and reads the jobs' states back, through
// Slurm's own commands (sbatch, squeue, scancel, scontrol), each called with an argv, never a
// shell string. What the answers mean for tasks is the domain's (packages/domain/src/slurm.ts).
//
// The job runs the shepherd on the run folder, so a Slurm job leaves the same files there as a
// local run (launch.json in, output.jsonl, trainer.json and exit.json out). On a real cluster the
// run folder must be on a filesystem the service and the compute nodes share.
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { judgeSlurmPoll, slurmPollDelay, slurmTimeLimit, type SlurmPoll, type SlurmVerdict } from '@trainyard/domain/slurm';
import { launchFileOf, type LaunchSpec } from '../trainer/launch';
import { PRIVATE_DIR_MODE } from '../trainer/run-files.mjs';
import { FILES, writeJsonAtomic, writePrivateFile } from '../trainer/run-folder';
import { trainerEnv } from '../trainer/env';
import { SHEPHERD_PATH } from '../trainer/shepherd-path';

/** Where jobs go and what else sbatch is told (TRAINYARD_SLURM_* in config.ts). */
export interface SlurmOptions {
  partition?: string | undefined;
  account?: string | undefined;
  qos?: string | undefined;
  /** Further sbatch options, one argv element each. */
  extraArgs: readonly string[];
}

export interface SlurmJobRequest {
  taskId: string;
  runDir: string;
  gpus: number;
  timeoutMs: number;
  /** Seconds before the time limit at which the job gets USR1 (the trainer's checkpoint warning). */
  checkpointWarningS: number;
}

/** The batch script of a run, written into its run folder. */
export const JOB_SCRIPT = 'slurm-job.mjs';
/** The batch script's own stdout and stderr (the trainer's output goes to output.jsonl). */
const JOB_OUTPUT = 'slurm.out';

/** sbatch's argv (after the program name) for one run whose batch script is `script`. */
export function sbatchArgv(req: SlurmJobRequest, opts: SlurmOptions, script: string): string[] {
  return [
    '--parsable',
    `--job-name=trainyard-${req.taskId}`,
    `--chdir=${req.runDir}`,
    `--output=${join(req.runDir, JOB_OUTPUT)}`,
    `--gres=gpu:${req.gpus}`,
    `--time=${slurmTimeLimit(req.timeoutMs)}`,
    // B: the batch step (the shepherd's process) gets it and passes it to the trainer's group.
    `--signal=B:USR1@${Math.max(1, Math.min(65_535, Math.round(req.checkpointWarningS)))}`,
    // Trainyard requeues a preempted task itself, as a new job in a new run folder (its next
    // attempt, from its checkpoint): Slurm's requeue in place would run it again in this one.
    '--no-requeue',
    ...(opts.partition ? [`--partition=${opts.partition}`] : []),
    ...(opts.account ? [`--account=${opts.account}`] : []),
    ...(opts.qos ? [`--qos=${opts.qos}`] : []),
    ...opts.extraArgs,
    script,
    req.runDir,
  ];
}

/**
 * The batch script: Node with the shepherd loaded, the run folder as its argument (Slurm copies
 * the script into its spool, so every path in it is absolute). The job's GPUs and Slurm job id go
 * into launch.json's environment for the trainer; USR1 is passed to the trainer's process group,
 * whose pid the shepherd wrote to trainer.json; the job exits with the trainer's status.
 */
function jobScript(nodePath: string, shepherdPath: string): string {
  const file = (name: string) => `join(runDir, ${JSON.stringify(name)})`;
  return [
    `#!${nodePath}`,
    '// A Trainyard run as a Slurm batch job: this process becomes the run folder’s shepherd.',
    "import { readFileSync, renameSync, writeFileSync } from 'node:fs';",
    "import { constants } from 'node:os';",
    "import { join } from 'node:path';",
    'const runDir = process.argv[2];',
    '// The trainer gets what Slurm gave the job: its GPUs and its job id.',
    `const launch = JSON.parse(readFileSync(${file(FILES.launch)}, 'utf8'));`,
    "for (const [k, v] of Object.entries(process.env)) if (k === 'CUDA_VISIBLE_DEVICES' || k.startsWith('SLURM_JOB_')) launch.env[k] = v;",
    "launch.env.CUDA_VISIBLE_DEVICES ??= '';",
    `writeFileSync(${file(FILES.launch)} + '.tmp', JSON.stringify(launch), { mode: 0o600 });`,
    `renameSync(${file(FILES.launch)} + '.tmp', ${file(FILES.launch)});`,
    "process.on('SIGUSR1', () => {",
    '  try {',
    `    const { pid } = JSON.parse(readFileSync(${file(FILES.trainer)}, 'utf8'));`,
    "    process.kill(-pid, 'SIGUSR1');",
    '  } catch {',
    '    // no trainer yet, or it is gone: nothing to warn',
    '  }',
    '});',
    '// The job ends as the trainer did, so that Slurm accounts a failed trainer as FAILED.',
    "process.on('exit', () => {",
    '  try {',
    `    const exit = JSON.parse(readFileSync(${file(FILES.exit)}, 'utf8'));`,
    '    process.exitCode = exit.error ? 1 : exit.signal ? 128 + (constants.signals[exit.signal] ?? 0) : (exit.code ?? 0);',
    '  } catch {',
    '    process.exitCode = 1;',
    '  }',
    '});',
    `await import(${JSON.stringify(pathToFileURL(shepherdPath).href)});`,
    '',
  ].join('\n');
}

/** Writes launch.json and the batch script into a fresh run folder; returns the script's path. */
export async function prepareSlurmRun(spec: LaunchSpec): Promise<string> {
  mkdirSync(spec.runDir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await writeJsonAtomic(join(spec.runDir, FILES.launch), launchFileOf(spec));
  const script = join(spec.runDir, JOB_SCRIPT);
  writePrivateFile(script, jobScript(process.execPath, SHEPHERD_PATH));
  chmodSync(script, 0o700);
  return script;
}

/** A Slurm command that did not succeed: what it said. */
class SlurmCommandError extends Error {
  constructor(
    readonly command: string,
    message: string,
  ) {
    super(`${command}: ${message}`);
  }
}

/**
 * The environment sbatch runs with. sbatch hands its own environment to the job (Slurm's default
 * --export=ALL): slurmctld keeps it with the job, and the batch step (the shepherd, whose
 * /proc/<pid>/environ its trainer can read) runs with it. So sbatch gets what a trainer may see
 * (the allow-list) and Slurm's own variables, never the service's database URL, passwords or tokens.
 */
function sbatchEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out = trainerEnv(env);
  for (const [name, value] of Object.entries(env))
    if (value !== undefined && (name.startsWith('SLURM_') || name.startsWith('SBATCH_'))) out[name] = value;
  return out;
}

/** Slurm's commands, run with an argv and a time limit. `env`: the environment they run with (SLURM_CONF, say). */
export class SlurmCli {
  constructor(private readonly opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}) {}

  private run(cmd: string, args: readonly string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(
        cmd,
        args,
        {
          env: cmd === 'sbatch' ? sbatchEnv(this.opts.env ?? process.env) : (this.opts.env ?? process.env),
          timeout: this.opts.timeoutMs ?? 30_000,
          maxBuffer: 16 * 1024 ** 2,
        },
        (err, stdout, stderr) => {
          if (err) reject(new SlurmCommandError(cmd, (stderr.trim() || err.message).split('\n').slice(-3).join(' | ')));
          else resolve(stdout);
        },
      );
    });
  }

  /** Submits one run; resolves to its job id. */
  async submit(req: SlurmJobRequest, opts: SlurmOptions, script: string): Promise<string> {
    const out = (await this.run('sbatch', sbatchArgv(req, opts, script))).trim();
    // --parsable: `<id>` or `<id>;<cluster>`.
    const id = out.split(';')[0]!;
    if (!/^\d+$/.test(id)) throw new SlurmCommandError('sbatch', `unexpected answer ${JSON.stringify(out)}`);
    return id;
  }

  /** One squeue call for all of `jobIds`: each listed job's state and reason, or why no answer came. */
  async poll(jobIds: readonly string[]): Promise<SlurmPoll> {
    if (!jobIds.length) return { ok: true, jobs: new Map() };
    let out: string;
    try {
      out = await this.run('squeue', ['--noheader', '--states=all', `--jobs=${jobIds.join(',')}`, '--format=%i|%T|%r']);
    } catch (err) {
      // squeue refuses the whole list when no job in it is known any more: an answer, not an outage.
      if (err instanceof SlurmCommandError && /Invalid job id specified/.test(err.message)) return { ok: true, jobs: new Map() };
      return { ok: false, error: (err as Error).message };
    }
    const jobs = new Map<string, { state: string; reason: string }>();
    for (const line of out.split('\n')) {
      const [id, state, ...reason] = line.trim().split('|');
      if (id && state) jobs.set(id, { state, reason: reason.join('|') });
    }
    return { ok: true, jobs };
  }

  /**
   * Our jobs of these names (`trainyard-<task id>`) that Slurm still lists, with their state and
   * work directory (the run folder): one squeue call. Null when the controller did not answer.
   */
  async jobsNamed(names: readonly string[]): Promise<{ jobId: string; name: string; state: string; workDir: string }[] | null> {
    if (!names.length) return [];
    try {
      const out = await this.run('squeue', ['--noheader', '--states=all', `--name=${names.join(',')}`, '--format=%i|%T|%j|%Z']);
      return out
        .split('\n')
        .map((l) => l.trim().split('|'))
        .filter((f) => f.length >= 4 && f[0])
        .map(([jobId, state, name, ...dir]) => ({ jobId: jobId!, state: state!, name: name!, workDir: dir.join('|') }));
    } catch {
      return null;
    }
  }

  /** Cancels a job (Slurm signals its processes: the trainer gets SIGTERM, then SIGKILL after KillWait). */
  async cancel(jobId: string): Promise<void> {
    await this.run('scancel', [jobId]);
  }

  /** Whether the controller answers (system.health). */
  async ping(): Promise<{ reachable: boolean; detail: string }> {
    try {
      const out = (await this.run('scontrol', ['ping'])).trim();
      return { reachable: /is UP/.test(out), detail: out };
    } catch (err) {
      return { reachable: false, detail: (err as Error).message };
    }
  }
}

/**
 * Reads the states of all watched jobs in one call per round, and hands what the domain makes of
 * them to `report`. While the controller does not answer, rounds back off (slurmPollDelay) and
 * nothing is concluded about any job; `unreachable` is told each failed round.
 */
export class SlurmWatcher {
  private readonly jobs = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;
  private closed = false;

  constructor(
    private readonly cli: SlurmCli,
    private readonly report: (verdicts: SlurmVerdict[]) => void | Promise<void>,
    private readonly opts: { baseMs: number; maxMs: number; unreachable?: (error: string, failuresInARow: number) => void },
  ) {}

  watch(jobId: string): void {
    this.jobs.add(jobId);
    if (!this.timer && !this.closed) this.next();
  }

  unwatch(jobId: string): void {
    this.jobs.delete(jobId);
  }

  private next(): void {
    this.timer = setTimeout(() => void this.round(), slurmPollDelay(this.failures, this.opts.baseMs, this.opts.maxMs));
    this.timer.unref();
  }

  private async round(): Promise<void> {
    const ids = [...this.jobs];
    if (ids.length) {
      const poll = await this.cli.poll(ids);
      if (this.closed) return;
      if (poll.ok) this.failures = 0;
      else this.opts.unreachable?.(poll.error, ++this.failures);
      await this.report(judgeSlurmPoll(ids, poll));
    }
    if (this.closed) return;
    if (this.jobs.size) this.next();
    else this.timer = null;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
