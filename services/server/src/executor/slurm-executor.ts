// The Slurm executor (TRAINYARD_EXECUTOR=slurm): each task is handed to Slurm when it is created
// (sbatch, recorded as TaskHandedToSlurm with the job id), Slurm places and runs it, and what
// Slurm and the job's run folder say becomes the task's events. One squeue call a round reads
// every active job (SlurmWatcher, backing off while the controller does not answer); the run
// folder is followed as the runner follows a local one (output lines, protocol, exit status), and
// the shepherd's exit status wins over Slurm's accounting. What each observation means is the
// domain's (decideSlurmJob in packages/domain/src/slurm.ts, decideRun for output lines); this
// module only asks and carries out.
//
// No service instance's runner runs these tasks: they are assigned to the runner id `slurm`
// (SLURM_RUNNER), which no lease covers, so the local runner and lease takeovers leave them alone.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import {
  decideRun,
  IllegalCommandError,
  isActive,
  isTerminal,
  startRun,
  TaskNotFoundError,
  type Device,
  type RunObservation,
  type RunState,
  type TaskCommand,
  type TaskRecord,
} from '@trainyard/domain';
import { decideSlurmJob, SLURM_RUNNER, slurmJobCurrent, type SlurmJobView, type SlurmVerdict } from '@trainyard/domain/slurm';
import {
  appendLogLines,
  isConnectionError,
  lastLogLines,
  lastLogSeq,
  listActive,
  listQueue,
  loadTask,
  loadTasks,
  type LogLine,
  type TaskStore,
} from '@trainyard/store';
import type { StoredTaskEvent } from '@trainyard/domain';
import type { ServiceConfig } from '../config';
import { DatasetError, stageDataset } from '../datasets';
import type { EventFeed } from '../feed';
import type { RunnerLog } from '../runner';
import { DATASET_DIR, resolveOutputDir } from '../runner/launcher';
import { LOG_FLUSH_MS, outputBuffer, type OutputBuffer } from '../runner/output-buffer';
import { FILES, readTrainerInfo, writePrivateFile, ensurePrivateDir, type ExitInfo } from '../trainer/run-folder';
import { observeLine, parseTrainerLine, ProgressThrottle } from '../trainer/protocol';
import { RunTailer } from '../trainer/tailer';
import type { Executor, ExecutorHealth } from './port';
import { prepareSlurmRun, SlurmCli, SlurmWatcher, type SlurmOptions } from './slurm';
import { errorText } from '../log';

type SlurmConfig = Extract<ServiceConfig['executor'], { kind: 'slurm' }>;

/** Stored line numbers of attempt n start after (n − 1) × this (as the runner numbers them). */
const ATTEMPT_SEQ_STRIDE = 10_000_000;
/** How long after Slurm says a job ended its run folder may still lack the shepherd's exit status. */
const EXIT_WAIT_MS = 10_000;
/** Lines of output quoted in a failed trainer's message. */
const TAIL_LINES_IN_ERROR = 12;

/** A job's run folder being followed: its output into the log, its protocol into events, its exit. */
interface Follow {
  jobId: string;
  runDir: string;
  state: RunState;
  tailer: RunTailer;
  output: OutputBuffer;
  flushTimer: NodeJS.Timeout;
  /** exit.json, once every line before it was read and stored, and when that was. */
  exit: ExitInfo | null;
  exitAt: number | null;
}

export class SlurmExecutor implements Executor {
  readonly kind = 'slurm' as const;
  readonly placesLocally = false;
  private readonly cli: SlurmCli;
  private readonly pingCli: SlurmCli;
  private readonly watcher: SlurmWatcher;
  private readonly options: SlurmOptions;
  /** Each watched job's task, and each task's watched job. */
  private readonly taskOfJob = new Map<string, string>();
  private readonly jobOfTask = new Map<string, string>();
  /** What the last poll said of each watched job. */
  private readonly views = new Map<string, SlurmJobView>();
  /** When Slurm first said a job ended (its run folder's exit status may lag). */
  private readonly endedAt = new Map<string, number>();
  private readonly reasons = new Map<string, string>();
  private readonly follows = new Map<string, Follow>();
  /** One settle at a time per task. */
  private readonly chains = new Map<string, Promise<void>>();
  /** Tasks being submitted now (two notifications never submit two jobs). */
  private readonly submitting = new Set<string>();
  /** Tasks whose sbatch failed: tried again each round. */
  private readonly unsubmitted = new Set<string>();
  private retryTimer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  private lastPoll: { ok: boolean; error: string | null; failuresInARow: number } = { ok: true, error: null, failuresInARow: 0 };
  private closed = false;

  constructor(
    private readonly store: TaskStore,
    private readonly config: ServiceConfig,
    private readonly slurm: SlurmConfig,
    private readonly feed: EventFeed,
    private readonly log: RunnerLog,
  ) {
    this.cli = new SlurmCli();
    this.pingCli = new SlurmCli({ timeoutMs: 5000 });
    this.options = { partition: slurm.partition, account: slurm.account, qos: slurm.qos, extraArgs: slurm.extraArgs };
    this.watcher = new SlurmWatcher(this.cli, (verdicts) => this.report(verdicts), {
      baseMs: slurm.pollMs,
      maxMs: Math.max(slurm.pollMs, 60_000),
      unreachable: (error, n) => {
        this.lastPoll = { ok: false, error, failuresInARow: n };
        // Said once, then every tenth: nothing is concluded about any job meanwhile.
        if (n === 1 || n % 10 === 0)
          this.log.warn(`Slurm does not answer (${error}); ${n} poll(s) in a row unanswered, no job is judged meanwhile`);
      },
    });
  }

  private get db() {
    return this.store.db;
  }

  /** Start-up: every active task is reconciled with Slurm and its run folder. */
  async start(): Promise<void> {
    this.unsubscribe = this.feed.onEvents((events) => void this.onEvents(events));
    // Running (PREPARING, TRAINING) and waiting (QUEUED, in order; a paused one has no job).
    const active = [...(await listActive(this.db)), ...(await listQueue(this.db))];
    const due = active.filter((t) => this.submissionDue(t));
    // A job submitted just before a crash, before its TaskHandedToSlurm was committed, is adopted, not submitted again.
    const found = due.length ? await this.cli.jobsNamed(due.map((t) => jobName(t.id))) : [];
    for (const t of due) {
      const runDir = this.runDirOf(t.id, t.attempt + 1);
      const job = found?.find((j) => j.name === jobName(t.id) && j.workDir === runDir);
      if (job) {
        this.log.info(`task ${t.id}: adopting Slurm job ${job.jobId} (submitted before a restart, not yet recorded)`);
        await this.recordHandOver(t.id, job.jobId, runDir);
      } else if (found === null) this.unsubmitted.add(t.id);
      else void this.submit(t);
    }
    let watched = 0;
    for (const t of active) {
      if (!t.slurmJob || !slurmJobCurrent(t)) continue;
      this.watch(t.id, t.slurmJob.jobId);
      watched++;
      // Decided from the run folder at once: an exit status written while the service was down ends the task even if Slurm does not answer.
      if (t.runnerId === SLURM_RUNNER) this.settle(t.id);
    }
    if (watched || due.length) this.log.info(`slurm: reconciling ${watched} task(s) with their jobs, ${due.length} to submit`);
    this.armRetry();
  }

  requestDevices(): readonly Device[] {
    // A request is checked against a node of `maxGpus` GPUs of unknown memory: Slurm refuses what no node has.
    return Array.from({ length: this.slurm.maxGpus }, (_, i) => ({
      id: `slurm-gpu${i}`,
      gpuIndex: i,
      uuid: null,
      name: 'Slurm GPU',
      memoryMb: 0,
      migProfile: null,
    }));
  }

  queueReason(taskId: string): string | null {
    // Under Slurm the local policy has no say: until the next poll, the task waits for Slurm.
    return (
      this.reasons.get(taskId) ??
      (this.unsubmitted.has(taskId)
        ? 'Not handed to Slurm yet: sbatch failed; retrying.'
        : 'Handed to Slurm: its job is read at the next poll.')
    );
  }

  async health(): Promise<ExecutorHealth> {
    const ping = await this.pingCli.ping();
    return { executor: 'slurm', reachable: ping.reachable, detail: ping.detail };
  }

  close(): void {
    this.closed = true;
    this.unsubscribe?.();
    this.watcher.close();
    if (this.retryTimer) clearInterval(this.retryTimer);
    for (const f of this.follows.values()) {
      f.tailer.stop();
      clearInterval(f.flushTimer);
    }
    this.follows.clear();
  }

  // ---------------------------------------------------------------------------------------
  // Submission

  private submissionDue(t: TaskRecord): boolean {
    return (t.status === 'QUEUED' || t.status === 'PENDING') && !t.held && !slurmJobCurrent(t);
  }

  private runDirOf(taskId: string, attempt: number): string {
    return join(this.config.runsDir, taskId, `attempt-${attempt}`);
  }

  /** sbatch the task's next attempt, and record the job id (TaskHandedToSlurm). */
  private async submit(task: TaskRecord): Promise<void> {
    if (this.submitting.has(task.id) || this.closed) return;
    this.submitting.add(task.id);
    try {
      // As it is now: another notification may have submitted it meanwhile.
      const fresh = await this.retry(() => loadTask(this.db, task.id));
      if (!fresh || !this.submissionDue(fresh)) return;
      task = fresh;
      const attempt = task.attempt + 1;
      const runDir = this.runDirOf(task.id, attempt);
      let script: string;
      try {
        script = await this.prepare(task, runDir);
      } catch (err) {
        if (!(err instanceof DatasetError)) throw err;
        // The dataset was refused at launch, as a local run's would be: the task fails without a job.
        await this.apply(task.id, [
          { command: { type: 'assign', devices: [], runnerId: SLURM_RUNNER, grounds: null }, actor: 'slurm' },
          { command: { type: 'fail', reason: 'spawn', message: err.message }, actor: 'runner' },
        ]);
        return;
      }
      let jobId: string;
      try {
        jobId = await this.cli.submit(
          {
            taskId: task.id,
            runDir,
            gpus: task.spec.resources.gpus,
            timeoutMs: task.spec.timeoutMs,
            checkpointWarningS: this.slurm.checkpointWarningS,
          },
          this.options,
          script,
        );
      } catch (err) {
        this.unsubmitted.add(task.id);
        this.log.warn(`task ${task.id}: sbatch failed (${errorText(err)}); trying again every ${this.slurm.pollMs} ms`);
        return;
      }
      this.unsubmitted.delete(task.id);
      this.log.info(
        `task ${task.id}: sbatch: Slurm job ${jobId} (attempt ${attempt}, ${task.spec.resources.gpus} GPU(s), run folder ${runDir})`,
      );
      await this.recordHandOver(task.id, jobId, runDir);
    } catch (err) {
      this.log.error(`task ${task.id}: handing it to Slurm failed: ${errorText(err)}`);
    } finally {
      this.submitting.delete(task.id);
    }
  }

  private async recordHandOver(taskId: string, jobId: string, runDir: string): Promise<void> {
    const r = await this.command(taskId, { type: 'handToSlurm', jobId, runDir }, 'executor');
    if (r?.slurmJob?.jobId === jobId) this.watch(taskId, jobId);
    else {
      // Cancelled or paused while it was being submitted: the job must not run.
      this.log.info(`task ${taskId}: Slurm job ${jobId} is not wanted any more (${r?.status ?? 'task gone'}); scancel`);
      await this.cli.cancel(jobId).catch((err: Error) => this.log.warn(`scancel ${jobId}: ${errorText(err)}`));
    }
  }

  /**
   * The run folder a job's shepherd reads (launch.json, the batch script, task.json, the dataset
   * copy), as the local launcher makes it; on a cluster it must be on a filesystem the nodes share.
   */
  private async prepare(task: TaskRecord, runDir: string): Promise<string> {
    const outputDir = resolveOutputDir(this.config, task);
    ensurePrivateDir(this.config.runsDir, runDir);
    // A run folder left by an earlier submission that never ran (the service died before recording it) is begun again.
    for (const f of [FILES.launch, FILES.output, FILES.exit, FILES.trainer]) rmSync(join(runDir, f), { force: true });
    mkdirSync(outputDir, { recursive: true });
    const datasetPath = await stageDataset(task.spec.datasetPath, this.config.datasetsRoots, join(runDir, DATASET_DIR));
    const specFile = join(runDir, 'task.json');
    writePrivateFile(
      specFile,
      JSON.stringify({ id: task.id, ...task.spec, outputDir, datasetPath, submittedDatasetPath: task.spec.datasetPath }, null, 2),
    );
    const [cmd, ...args] = this.config.trainer;
    const cwd = this.config.trainerCwd;
    const argv0 = cmd === 'node' ? process.execPath : cmd!.includes('/') && !isAbsolute(cmd!) ? join(cwd, cmd!) : cmd!;
    return prepareSlurmRun({
      runDir,
      argv: [argv0, ...args.map((a) => (a.startsWith('trainers/') ? join(cwd, a) : a))],
      cwd,
      env: {
        ...this.config.trainerInheritedEnv,
        // The job's GPUs: Slurm sets CUDA_VISIBLE_DEVICES in the job, and the batch script passes it on.
        CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
        TRAINYARD_TASK_SPEC: specFile,
        TRAINYARD_TASK_ID: task.id,
        ...(task.checkpoint ? { TRAINYARD_RESUME_FROM: task.checkpoint.path } : {}),
        TRAINYARD_OUTPUT_DIR: outputDir,
      },
      maxLineBytes: this.config.logMaxLineBytes,
      maxLinesPerSecond: this.config.logMaxLinesPerSecond,
      maxProtocolLinesPerSecond: this.config.logMaxProtocolLinesPerSecond,
      maxProtocolLinesPerTask: this.config.logMaxProtocolLinesPerTask,
      maxBytesPerTask: this.config.logMaxBytesPerTask,
    });
  }

  /** sbatch failed (the controller away): tried again each poll interval. */
  private armRetry(): void {
    if (this.retryTimer) return;
    this.retryTimer = setInterval(() => {
      if (!this.unsubmitted.size) return;
      void (async () => {
        const tasks = await loadTasks(this.db, [...this.unsubmitted]).catch(() => null);
        for (const t of tasks?.values() ?? []) {
          if (this.submissionDue(t)) void this.submit(t);
          else this.unsubmitted.delete(t.id);
        }
      })();
    }, this.slurm.pollMs);
    this.retryTimer.unref();
  }

  // ---------------------------------------------------------------------------------------
  // What the log says: new tasks to submit, jobs to cancel

  private async onEvents(events: StoredTaskEvent[]): Promise<void> {
    const relevant = new Set(
      events
        .filter((e) =>
          ['TaskQueued', 'TaskPreempted', 'TaskReleased', 'TaskHeld', 'TaskCancelled', 'StopRequested', 'TaskHandedToSlurm'].includes(
            e.type,
          ),
        )
        .map((e) => e.streamId),
    );
    if (!relevant.size || this.closed) return;
    let tasks: Map<string, TaskRecord>;
    try {
      tasks = await loadTasks(this.db, [...relevant]);
    } catch (err) {
      this.log.warn(`slurm: could not load tasks: ${errorText(err)}`);
      return;
    }
    for (const t of tasks.values()) {
      const jobId = this.jobOfTask.get(t.id);
      if (this.submissionDue(t)) {
        // A job of its earlier attempt (or one given up when it was paused) goes first.
        if (jobId && jobId !== t.slurmJob?.jobId) this.scancel(t.id, jobId, 'not wanted any more');
        void this.submit(t);
      } else if (t.slurmJob && slurmJobCurrent(t)) {
        this.watch(t.id, t.slurmJob.jobId);
        if (isTerminal(t.status) || t.stop) this.scancel(t.id, t.slurmJob.jobId, t.stop ? `stop requested (${t.stop.reason})` : t.status);
      } else if (jobId && (t.held || isTerminal(t.status))) this.scancel(t.id, jobId, t.held ? 'paused' : t.status);
    }
  }

  private scancel(taskId: string, jobId: string, why: string): void {
    const view = this.views.get(jobId);
    if (view?.phase === 'ended') return;
    this.log.info(`task ${taskId}: scancel Slurm job ${jobId} (${why})`);
    this.cli.cancel(jobId).catch((err: Error) => this.log.warn(`scancel ${jobId}: ${errorText(err)}`));
  }

  // ---------------------------------------------------------------------------------------
  // What Slurm says

  private watch(taskId: string, jobId: string): void {
    const before = this.jobOfTask.get(taskId);
    if (before === jobId) return;
    if (before) this.forget(taskId);
    this.jobOfTask.set(taskId, jobId);
    this.taskOfJob.set(jobId, taskId);
    this.watcher.watch(jobId);
  }

  private forget(taskId: string): void {
    const jobId = this.jobOfTask.get(taskId);
    this.jobOfTask.delete(taskId);
    this.reasons.delete(taskId);
    if (!jobId) return;
    this.taskOfJob.delete(jobId);
    this.views.delete(jobId);
    this.endedAt.delete(jobId);
    this.watcher.unwatch(jobId);
  }

  private report(verdicts: SlurmVerdict[]): void {
    if (verdicts.some((v) => !('why' in v && v.why === 'unreachable'))) {
      if (!this.lastPoll.ok) this.log.info('Slurm answers again');
      this.lastPoll = { ok: true, error: null, failuresInARow: 0 };
    }
    for (const v of verdicts) {
      const taskId = this.taskOfJob.get(v.jobId);
      if (!taskId) continue;
      // Unanswered or not listed: what was last seen stands (nothing is concluded from silence).
      if (v.view.phase !== 'unknown') {
        this.views.set(v.jobId, v.view);
        if (v.view.phase === 'ended') {
          if (!this.endedAt.has(v.jobId)) this.endedAt.set(v.jobId, Date.now());
        } else this.endedAt.delete(v.jobId);
      }
      this.settle(taskId);
    }
  }

  /** Decide again for one task (serialised per task). */
  private settle(taskId: string): void {
    const prev = this.chains.get(taskId) ?? Promise.resolve();
    const next = prev
      .then(() => this.settleNow(taskId))
      .catch((err: Error) => this.log.error(`task ${taskId}: ${errorText(err)}`))
      .finally(() => {
        if (this.chains.get(taskId) === next) this.chains.delete(taskId);
      });
    this.chains.set(taskId, next);
  }

  private async settleNow(taskId: string): Promise<void> {
    if (this.closed) return;
    const task = await this.retry(() => loadTask(this.db, taskId));
    const jobId = this.jobOfTask.get(taskId);
    if (!task || !jobId) return;
    const job = task.slurmJob;
    const view: SlurmJobView = this.views.get(jobId) ?? { phase: 'unknown', state: '' };
    const follow = this.follows.get(taskId);
    const runDir = job?.runDir ?? follow?.runDir;
    const trainer = runDir && !task.trainer ? await readTrainerInfo(runDir) : null;
    const ended = this.endedAt.get(jobId);
    const exitFileThere = runDir ? existsSync(join(runDir, FILES.exit)) : false;
    // Long enough since Slurm said it ended (and no exit file is being read), or since the exit
    // file was read without Slurm saying why the trainer ended (it may no longer list the job).
    const exitWaitOver =
      (ended !== undefined && Date.now() - ended > EXIT_WAIT_MS && !(exitFileThere && follow && !follow.exit)) ||
      (follow?.exitAt != null && Date.now() - follow.exitAt > EXIT_WAIT_MS);
    const d = decideSlurmJob(task, {
      view,
      trainer: trainer ? { pid: trainer.pid, startTime: trainer.startTime } : null,
      exit: follow?.exit ?? null,
      exitWaitOver,
    });
    if (d.queueReason) this.reasons.set(taskId, d.queueReason);
    else this.reasons.delete(taskId);
    if (d.scancel) this.scancel(taskId, jobId, `task ${task.status}`);
    if (d.commands.length) {
      // A trainer's exit goes in after all its output (and quotes the last lines when it failed).
      if (d.commands.some((c) => c.command.type === 'recordExit' || c.command.type === 'fail')) await follow?.output.flush();
      await this.apply(taskId, d.commands);
    }
    const now = d.commands.length ? await this.retry(() => loadTask(this.db, taskId)) : task;
    if (!now) return;
    if (d.follow && !this.follows.has(taskId) && now.slurmJob && isActive(now.status) && now.status !== 'QUEUED') await this.follow(now);
    // Waiting for Slurm's end or the exit file: decide again once the wait is over.
    if ((ended !== undefined || follow?.exit) && !exitWaitOver && !isTerminal(now.status))
      setTimeout(() => this.settle(taskId), EXIT_WAIT_MS).unref();
    if (isTerminal(now.status)) this.finish(now);
  }

  /** The task ended: stop following, stop watching, remove the dataset copy. */
  private finish(task: TaskRecord): void {
    const f = this.follows.get(task.id);
    if (f) {
      f.tailer.stop();
      clearInterval(f.flushTimer);
      this.follows.delete(task.id);
    }
    const jobId = this.jobOfTask.get(task.id);
    const view = jobId ? this.views.get(jobId) : undefined;
    // A terminal task whose job Slurm still runs is cancelled (decideSlurmJob said so); watched until it ends.
    if (view?.phase === 'ended' || !jobId || view === undefined) this.forget(task.id);
    const runDir = task.slurmJob?.runDir;
    if (runDir) rmSync(join(runDir, DATASET_DIR), { recursive: true, force: true });
  }

  // ---------------------------------------------------------------------------------------
  // Following the run folder

  private async follow(task: TaskRecord): Promise<void> {
    const job = task.slurmJob!;
    const base = (task.attempt - 1) * ATTEMPT_SEQ_STRIDE;
    const fromSeq = Math.max(0, (await this.retry(() => lastLogSeq(this.db, task.id))) - base);
    if (this.follows.has(task.id) || this.closed) return;
    const outputDir = resolveOutputDir(this.config, task);
    const limits = { maxPerTask: this.config.artifactsMaxPerTask, maxPathChars: this.config.artifactPathMaxChars };
    const throttle = new ProgressThrottle();
    const output = outputBuffer((lines) => this.storeLines(task.id, lines));
    const state: RunState = { ...startRun(task, job.runDir), phase: 'following' };
    const follow: Follow = {
      jobId: job.jobId,
      runDir: job.runDir,
      state,
      output,
      exit: null,
      exitAt: null,
      flushTimer: setInterval(() => void output.flush(), LOG_FLUSH_MS),
      tailer: new RunTailer(job.runDir, fromSeq, async (local) => {
        const { obs } = observeLine(local, {
          seqBase: base,
          throttle,
          outputDir,
          artifactsSoFar: follow.state.artifacts.length,
          limits,
        });
        // Its spawn is recorded before anything it said (a trainer in TRAINING cannot be spawned).
        if (obs.message && !follow.state.pid) await this.recordSpawnFrom(task.id, follow);
        await this.onLine(task.id, follow, obs);
      }),
    };
    this.follows.set(task.id, follow);
    follow.tailer.start();
    follow.tailer.exited.then(
      async (exit) => {
        if (this.follows.get(task.id) !== follow) return;
        clearInterval(follow.flushTimer);
        await output.flush();
        if (!follow.state.pid) await this.recordSpawnFrom(task.id, follow);
        follow.exit = exit;
        follow.exitAt = Date.now();
        this.settle(task.id);
      },
      (err: Error) => this.log.error(`following task ${task.id} failed: ${errorText(err)}`),
    );
  }

  private async recordSpawnFrom(taskId: string, follow: Follow): Promise<void> {
    const info = await readTrainerInfo(follow.runDir);
    if (!info) return;
    const now = await this.command(
      taskId,
      { type: 'recordSpawn', pid: info.pid, startTime: info.startTime, runDir: follow.runDir },
      'runner',
    );
    // Recorded now or already (by a poll): either way it is known.
    if (now?.trainer || !now) follow.state = { ...follow.state, pid: info.pid };
  }

  /** One output line: the run decider says what it means (protocol → events), the line is stored. */
  private async onLine(taskId: string, follow: Follow, obs: Extract<RunObservation, { type: 'line' }>): Promise<void> {
    const d = decideRun(follow.state, obs);
    follow.state = d.run;
    for (const c of d.commands) {
      if (c.flushFirst) await follow.output.flush();
      const now = await this.command(taskId, c.command, c.actor);
      if (c.command.type === 'startTraining' && now) follow.state = { ...follow.state, status: now.status };
    }
    for (const e of d.effects) {
      if (e.kind === 'storeLine')
        await follow.output.push({ seq: e.line.seq, stream: e.line.stream, line: e.line.line, at: new Date(e.line.t).toISOString() });
      else if (e.kind === 'log') this.log[e.level](e.message);
    }
  }

  private async storeLines(taskId: string, lines: LogLine[]): Promise<void> {
    try {
      await this.retry(() => appendLogLines(this.db, taskId, lines));
    } catch (err) {
      this.log.warn(`task ${taskId}: storing ${lines.length} output lines failed: ${errorText(err)}`);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Commands

  /** Commands in order; one the task's state refuses (it moved on) ends the sequence. */
  private async apply(taskId: string, steps: readonly { command: TaskCommand; actor: string }[]): Promise<void> {
    for (const step of steps) {
      let command = step.command;
      if (command.type === 'recordExit' && command.exitCode !== 0) {
        const lines = await this.retry(() => lastLogLines(this.db, taskId, 200)).catch(() => [] as LogLine[]);
        const tail = lines
          .filter((l) => parseTrainerLine(l.line).kind === 'log')
          .slice(-TAIL_LINES_IN_ERROR)
          .map((l) => l.line);
        if (tail.length) command = { ...command, detail: `${command.detail ? `${command.detail}; ` : ''}last output:\n${tail.join('\n')}` };
      }
      if (!(await this.command(taskId, command, step.actor))) return;
    }
  }

  /** One command; an illegal one (the task moved on) is logged and answers null. Database outages are retried. */
  private async command(taskId: string, command: TaskCommand, actor: string): Promise<TaskRecord | null> {
    try {
      return (await this.retry(() => this.store.execute(taskId, command, { actor }))).task;
    } catch (err) {
      if (err instanceof IllegalCommandError || err instanceof TaskNotFoundError) {
        this.log.info(`task ${taskId}: ${command.type} not recorded: ${errorText(err)}`);
        return null;
      }
      this.log.error(`task ${taskId}: ${command.type} failed: ${errorText(err)}`);
      return null;
    }
  }

  private async retry<T>(fn: () => Promise<T>): Promise<T> {
    for (let delay = 100; ; delay = Math.min(delay * 2, 5000)) {
      try {
        return await fn();
      } catch (err) {
        if (this.closed || !isConnectionError(err)) throw err;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }
}

function jobName(taskId: string): string {
  return `trainyard-${taskId}`;
}
