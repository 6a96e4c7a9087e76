// The runner: turns "task assigned to this instance" into a trainer process, and the
// trainer's output and exit into commands. Trainers run under a detached shepherd that writes
// to files, so a crash of this process loses nothing: `recover` re-attaches on start-up.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { EventEmitter } from 'node:events';
import { decideRecovery, IllegalCommandError, isActive, TaskNotFoundError, type RunFacts, type TaskCommand, type TaskRecord } from '@trainyard/domain';
import { appendLogLines, isConnectionError, lastLogLines, lastLogSeq, listActive, loadTask, type LogLine, type TaskStore } from '@trainyard/store';
import type { ServiceConfig } from './config';
import { findShepherds, isSameProcessAlive, signalGroup } from './trainer/proc';
import { checkArtifact, parseTrainerLine, progressRecord, ProgressThrottle } from './trainer/protocol';
import { DatasetError, stageDataset } from './datasets';
import { trainerEnv } from './trainer/env';
import { discardUnstartedLaunch, ensurePrivateDir, launchShepherd, writePrivateFile, readExit, readTrainerInfo, RunTailer, StandbyShepherd, waitForTrainerInfo, FILES, type ExitInfo, type LaunchSpec, type OutputLine } from './trainer/run';

type Outcome = 'reattached' | 'settled' | 'launched' | 'failed';

interface Run {
  taskId: string;
  attempt: number;
  runDir: string;
  pid: number | null;
  tailer: RunTailer | null;
  stopRequested: boolean;
  killTimer: NodeJS.Timeout | null;
  finished: boolean;
}

export interface RunnerLog {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

const LOG_FLUSH_MS = 100;
const LOG_FLUSH_LINES = 500;
/** Lines of output quoted in a failed task's error message. */
const TAIL_LINES_IN_ERROR = 12;
/** The run folder's copy of the task's dataset, which the trainer reads; removed when it ends. */
const DATASET_DIR = 'dataset';

export class Runner {
  private readonly runs = new Map<string, Run>();
  private readonly deadlines = new Map<string, NodeJS.Timeout>();
  /** Emits 'logs' (taskId) when lines were stored, for live log subscriptions. */
  readonly events = new EventEmitter();
  private closed = false;
  /**
   * A shepherd started ahead of need, handed the next run (see StandbyShepherd): a launch then
   * skips Node's start-up. Replaced in the background after each launch; when there is none
   * ready (first launch, it died), launch() spawns a fresh shepherd as before.
   */
  private standby: StandbyShepherd | null = null;
  private standbyStarting = false;
  private standbyError: string | null = null;

  constructor(
    private readonly store: TaskStore,
    private readonly config: ServiceConfig,
    private readonly log: RunnerLog,
  ) {
    this.events.setMaxListeners(0);
  }

  /** PIDs of trainers this instance runs (to tell our GPU processes from other programs'). */
  ourPids(): Set<number> {
    return new Set([...this.runs.values()].flatMap((r) => (r.pid ? [r.pid] : [])));
  }

  get activeCount(): number {
    return this.runs.size;
  }

  runDirOf(task: Pick<TaskRecord, 'id' | 'attempt'>): string {
    return join(this.config.runsDir, task.id, `attempt-${task.attempt}`);
  }

  /** React to a task's new state, whoever committed it (this instance or another). */
  observe(task: TaskRecord): void {
    if (this.closed || task.runnerId !== this.config.runnerId) return;
    if (!isActive(task.status)) return;
    if (!this.runs.has(task.id)) void this.settle(task, this.claim(task));
    this.armDeadline(task);
    if (task.stop) this.stop(task.id);
  }

  /** Start-up: re-attach to trainers that still run, settle those that ended, start the rest. */
  async recover(): Promise<Record<Outcome, string[]>> {
    const report: Record<Outcome, string[]> = { reattached: [], settled: [], launched: [], failed: [] };
    this.ensureStandby();
    for (const task of await listActive(this.store.db)) {
      if (task.runnerId !== this.config.runnerId || this.runs.has(task.id)) continue;
      report[await this.settle(task, this.claim(task))].push(task.id);
      this.armDeadline(task);
      if (task.stop) this.stop(task.id);
    }
    return report;
  }

  /** Take charge of a task synchronously, so two notifications never start two trainers. */
  private claim(task: TaskRecord): Run {
    const run: Run = { taskId: task.id, attempt: task.attempt, runDir: task.trainer?.runDir ?? this.runDirOf(task), pid: task.trainer?.pid ?? null, tailer: null, stopRequested: false, killTimer: null, finished: false };
    this.runs.set(task.id, run);
    return run;
  }

  /**
   * Bring one active task of ours to where it should be, from what its run folder says:
   * a live trainer is followed, an ended one settled, a vanished one failed, and a task whose
   * trainer was never started gets one now.
   */
  private async settle(task: TaskRecord, run: Run): Promise<Outcome> {
    const runDir = run.runDir;
    for (;;) {
      const facts = await this.runFacts(task, runDir);
      const action = decideRecovery(task, facts);
      switch (action.kind) {
        case 'recordSpawn': {
          const r = await this.command(task.id, { type: 'recordSpawn', pid: action.pid, startTime: action.startTime, runDir }, 'runner');
          if (!r?.trainer) return this.release(task.id, 'failed');
          task = r;
          continue;
        }
        case 'awaitShepherd':
          await this.awaitShepherd(task.id, runDir);
          continue;
        case 'launch':
          await this.launch(task, run);
          return 'launched';
        case 'failSpawn':
          this.runs.delete(task.id);
          await this.command(task.id, { type: 'fail', reason: 'spawn', message: action.message }, 'runner');
          return 'failed';
        case 'follow':
        case 'settle':
          run.pid = task.trainer!.pid;
          void this.follow(task, run);
          return action.kind === 'follow' ? 'reattached' : 'settled';
        case 'failLost': {
          this.runs.delete(task.id);
          const last = await lastLogLines(this.store.db, task.id, 3);
          const tail = last.length ? `. Last output: ${last.map((l) => l.line).join(' | ')}` : '';
          await this.command(task.id, { type: 'fail', reason: 'lost', message: action.message + tail }, 'recovery');
          return 'failed';
        }
      }
    }
  }

  private release(taskId: string, outcome: Outcome): Outcome {
    this.runs.delete(taskId);
    return outcome;
  }

  private async runFacts(task: TaskRecord, runDir: string): Promise<RunFacts> {
    const trainerFile = task.trainer ? null : await readTrainerInfo(runDir);
    const trainerAlive = task.trainer?.startTime ? isSameProcessAlive(task.trainer.pid, task.trainer.startTime) : false;
    // A trainer that just died may still be having its exit written by the shepherd.
    const exitFile = trainerAlive ? null : task.trainer ? await this.waitForExitFile(runDir, 2000) : await readExit(runDir);
    // No run folder yet (a fresh assignment): no shepherd can exist for it, so skip the /proc scan.
    const shepherdAlive = !task.trainer && !trainerFile && !exitFile && existsSync(runDir) ? findShepherds(runDir).length > 0 : false;
    return { trainerFile, exitFile, trainerAlive, shepherdAlive };
  }

  /**
   * A shepherd of this run is alive but has not reported a trainer yet (it is starting up):
   * wait until it does, writes an exit, or is gone. One that reports nothing for a minute is
   * hung: it is killed, so that the run can be launched again without two trainers.
   */
  private async awaitShepherd(taskId: string, runDir: string): Promise<void> {
    this.log.info(`task ${taskId}: a shepherd for ${runDir} is starting; waiting for it instead of launching another`);
    const until = Date.now() + 60_000;
    for (;;) {
      if ((await readTrainerInfo(runDir)) || (await readExit(runDir))) return;
      const shepherds = findShepherds(runDir);
      if (!shepherds.length) return;
      if (Date.now() > until) {
        this.log.warn(`task ${taskId}: shepherd ${shepherds.join(', ')} reported nothing for 60 s; killing it to launch again`);
        for (const pid of shepherds) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private async waitForExitFile(runDir: string, ms: number): Promise<ExitInfo | null> {
    const until = Date.now() + ms;
    for (;;) {
      const exit = await readExit(runDir);
      if (exit || Date.now() >= until) return exit;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private async launch(task: TaskRecord, run: Run): Promise<void> {
    const runDir = run.runDir;
    try {
      const outputDir = resolveOutputDir(this.config, task);
      // Sync calls: microseconds each, where a thread-pool round trip costs more (see run.ts).
      ensurePrivateDir(this.config.runsDir, runDir);
      mkdirSync(outputDir, { recursive: true });
      // The trainer reads a checked copy, never the submitted path (see datasets.ts).
      let datasetPath: string;
      try {
        datasetPath = await stageDataset(task.spec.datasetPath, this.config.datasetsRoots, join(runDir, DATASET_DIR));
      } catch (err) {
        if (!(err instanceof DatasetError)) throw err;
        await this.command(task.id, { type: 'fail', reason: 'spawn', message: err.message }, 'runner');
        this.runs.delete(task.id);
        return;
      }
      const specFile = join(runDir, 'task.json');
      writePrivateFile(specFile, JSON.stringify({ id: task.id, ...task.spec, outputDir, datasetPath, submittedDatasetPath: task.spec.datasetPath }, null, 2));
      // Recovery decided to launch: no shepherd of this folder is alive, so a launch.json left
      // by one that never started is stale.
      if (await discardUnstartedLaunch(runDir)) this.log.info(`task ${task.id}: its previous launch never started a shepherd; launching again`);
      const [cmd, ...args] = this.config.trainer;
      const argv = [resolveArgv0(cmd!, this.config.trainerCwd), ...args.map((a) => (a.startsWith('trainers/') ? join(this.config.trainerCwd, a) : a))];
      const spec: LaunchSpec = {
        runDir,
        argv,
        cwd: this.config.trainerCwd,
        env: {
          ...trainerEnv(process.env, this.config.trainerEnvPassThrough),
          // The slot's GPU is nvidia-smi's index, which is PCI bus order; CUDA's own default
          // order (fastest first) differs on a host with mixed GPUs.
          CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
          CUDA_VISIBLE_DEVICES: String(task.gpuIndex ?? 0),
          TRAINYARD_TASK_SPEC: specFile,
          TRAINYARD_TASK_ID: task.id,
          TRAINYARD_OUTPUT_DIR: outputDir,
        },
        maxLineBytes: this.config.logMaxLineBytes,
        maxLinesPerSecond: this.config.logMaxLinesPerSecond,
        maxProtocolLinesPerSecond: this.config.logMaxProtocolLinesPerSecond,
        maxProtocolLinesPerTask: this.config.logMaxProtocolLinesPerTask,
        maxBytesPerTask: this.config.logMaxBytesPerTask,
      };
      const standby = this.takeStandby();
      let shepherd = await launchShepherd(spec, standby).finally(() => standby?.dispose()); // no-op once handed the run
      let info = await waitForTrainerInfo(runDir, 30_000, { shepherdGone: shepherd.gone });
      if ('error' in info && info.shepherdGone && !existsSync(join(runDir, FILES.output)) && (await discardUnstartedLaunch(runDir))) {
        // The shepherd (a standby killed just as it was handed the run, say) ended before it
        // opened output.jsonl, which it does before spawning: no trainer was started. Once more
        // with a fresh shepherd. (It is gone and was our child, so it cannot start one later.)
        this.log.warn(`task ${task.id}: shepherd ${shepherd.shepherdPid} ended before starting the trainer; launching again`);
        shepherd = await launchShepherd(spec, null);
        info = await waitForTrainerInfo(runDir, 30_000, { shepherdGone: shepherd.gone });
      }
      // The next launch's standby starts now, off the path between a trainer's exit and the next.
      this.ensureStandby();
      if ('error' in info) {
        // Release the task only once its failure is committed: a notification arriving in
        // between must not take it again and fail it a second time with a vaguer message.
        await this.command(task.id, { type: 'fail', reason: 'spawn', message: `could not start the trainer ${JSON.stringify(this.config.trainer)}: ${info.error}. Check TRAINYARD_TRAINER.` }, 'runner');
        this.runs.delete(task.id);
        return;
      }
      run.pid = info.pid;
      const spawned = await this.command(task.id, { type: 'recordSpawn', pid: info.pid, startTime: info.startTime, runDir }, 'runner');
      void this.follow(spawned ?? task, run);
      if (spawned?.stop || run.stopRequested) {
        run.stopRequested = false;
        this.stop(task.id);
      }
    } catch (err) {
      this.log.error(`launching task ${task.id} failed: ${(err as Error).message}`);
      await this.command(task.id, { type: 'fail', reason: 'spawn', message: `could not start the trainer: ${(err as Error).message}` }, 'runner');
      this.runs.delete(task.id);
    }
  }

  /** The standby shepherd, if one is ready, for one launch (whoever calls it owns it). */
  private takeStandby(): StandbyShepherd | null {
    const standby = this.standby;
    this.standby = null;
    if (standby?.ready) return standby;
    standby?.dispose();
    return null;
  }

  /** Start a standby shepherd in the background unless one is ready or starting. */
  private ensureStandby(): void {
    if (this.closed || this.standbyStarting || this.standby?.ready) return;
    this.standby?.dispose();
    this.standby = null;
    this.standbyStarting = true;
    StandbyShepherd.start(this.config.runsDir).then(
      (standby) => {
        this.standbyStarting = false;
        if (this.closed) return standby.dispose();
        this.standby = standby;
        this.standbyError = null;
      },
      (err: unknown) => {
        this.standbyStarting = false;
        // Launches fall back to a fresh shepherd; say so once per distinct problem.
        const msg = (err as Error).message;
        if (msg !== this.standbyError) this.log.warn(`could not start a standby shepherd: ${msg}`);
        this.standbyError = msg;
      },
    );
  }

  /** Tail the trainer's output to the end and record its exit. */
  private async follow(task: TaskRecord, run: Run): Promise<void> {
    const fromSeq = await this.retry(() => lastLogSeq(this.store.db, task.id));
    let status = task.status;
    const artifacts = new Set(task.artifacts);
    const outputDir = resolveOutputDir(this.config, task);
    const artifactLimits = { maxPerTask: this.config.artifactsMaxPerTask, maxPathChars: this.config.artifactPathMaxChars };
    let artifactWarned = false;
    const throttle = new ProgressThrottle(1000);
    let buffer: LogLine[] = [];
    let lastFlush = Date.now();
    // Flushes run one after another: `await flush()` then means every line buffered so far is
    // stored, even those a timer flush already took (the failure detail reads them right after).
    let flushing: Promise<void> = Promise.resolve();
    const flush = (): Promise<void> => {
      flushing = flushing
        .catch(() => {})
        .then(async () => {
          if (!buffer.length) return;
          const lines = buffer;
          buffer = [];
          lastFlush = Date.now();
          await this.storeLines(task.id, lines);
          this.events.emit('logs', task.id);
        });
      return flushing;
    };
    const flushTimer = setInterval(() => void flush(), LOG_FLUSH_MS);
    const onLine = async (l: OutputLine) => {
      const parsed = l.stream === 'stdout' ? parseTrainerLine(l.line) : ({ kind: 'log' } as const);
      // Protocol messages become events before their line is stored: a crash in between
      // replays the line on re-attach, and the commands below are idempotent for it.
      if (parsed.kind === 'message') {
        const m = parsed.message;
        if (m.type === 'phase' && status === 'PREPARING') {
          await flush();
          const r = await this.command(task.id, { type: 'startTraining' }, 'trainer');
          if (r) status = r.status;
        } else if (m.type === 'progress' && throttle.offer(m, l.t)) {
          await this.command(task.id, { type: 'recordProgress', ...progressRecord(m) }, 'trainer');
        } else if (m.type === 'artifact') {
          const verdict = checkArtifact(m.path, outputDir, artifacts.size, artifactLimits);
          if (!verdict.ok) {
            // Dropped, not fatal: the line is stored as a warning in its place (same seq, so a
            // re-attach stores the same), and the service log says it once per task.
            if (!artifactWarned) this.log.warn(`task ${task.id}: refused an artifact its trainer reported: ${verdict.reason}`);
            artifactWarned = true;
            buffer.push({ seq: l.seq, stream: 'stderr', line: `[trainyard] artifact refused (${verdict.reason}): ${l.line}`, at: new Date(l.t).toISOString() });
            if (buffer.length >= LOG_FLUSH_LINES) await flush();
            return;
          }
          if (!artifacts.has(verdict.path)) {
            artifacts.add(verdict.path);
            await this.command(task.id, { type: 'recordArtifact', path: verdict.path }, 'trainer');
          }
        }
      }
      buffer.push({ seq: l.seq, stream: l.stream, line: l.line, at: new Date(l.t).toISOString() });
      if (buffer.length >= LOG_FLUSH_LINES || Date.now() - lastFlush > LOG_FLUSH_MS * 5) await flush();
    };
    const tailer = new RunTailer(run.runDir, fromSeq, onLine);
    run.tailer = tailer;
    tailer.start();
    let exit: ExitInfo;
    try {
      exit = await Promise.race([tailer.exited, this.watchShepherd(task, run)]);
    } catch (err) {
      this.log.error(`following task ${task.id} failed: ${(err as Error).message}`);
      return;
    } finally {
      clearInterval(flushTimer);
      tailer.stop();
    }
    // A failure quotes the stored output, so everything is stored first. A clean exit stores its
    // last lines in the transaction that records it (one commit fewer between this trainer and
    // the next); either way every line is stored no later than the task's final event.
    if (exit.code !== 0) await flush();
    else await flushing.catch(() => {});
    if (this.closed) return; // lines not stored yet are read again from output.jsonl on re-attach
    run.finished = true;
    if (run.killTimer) clearTimeout(run.killTimer);
    this.clearDeadline(task.id);
    const detail = exit.code === 0 ? undefined : await this.failureDetail(task.id);
    const command: TaskCommand = exit.error
      ? { type: 'fail', reason: (exit as { lost?: boolean }).lost ? 'lost' : 'spawn', message: exit.error }
      : { type: 'recordExit', exitCode: exit.code, signal: exit.signal, ...(detail ? { detail } : {}) };
    const lines = buffer;
    buffer = [];
    await this.command(task.id, command, 'runner', lines);
    this.runs.delete(task.id);
    // The copy can be as large as the dataset; the original stays where it was submitted from.
    try {
      rmSync(join(run.runDir, DATASET_DIR), { recursive: true, force: true });
    } catch (err) {
      this.log.warn(`task ${task.id}: could not remove its dataset copy: ${(err as Error).message}`);
    }
  }

  /**
   * The shepherd writes exit.json when the trainer ends; if the shepherd itself was killed
   * (OOM killer, kill -9 of the group), no exit.json ever comes. Notice a trainer that is gone
   * with no exit status and report it as lost instead of waiting forever.
   */
  private watchShepherd(task: TaskRecord, run: Run): Promise<ExitInfo> {
    return new Promise((resolve) => {
      let goneSince: number | null = null;
      const timer = setInterval(async () => {
        if (run.finished || this.closed || run.tailer === null) return clearInterval(timer);
        const startTime = task.trainer?.startTime;
        const alive = run.pid !== null && (startTime ? isSameProcessAlive(run.pid, startTime) : processExists(run.pid));
        if (alive) return void (goneSince = null);
        goneSince ??= Date.now();
        if (Date.now() - goneSince < 5000 || (await readExit(run.runDir))) return;
        clearInterval(timer);
        resolve({ code: null, signal: null, error: `trainer process ${run.pid} disappeared without an exit status (its shepherd was killed too)`, endedAt: Date.now(), lost: true } as ExitInfo);
      }, 1000);
      timer.unref();
    });
  }

  private async failureDetail(taskId: string): Promise<string | undefined> {
    const lines = await this.retry(() => lastLogLines(this.store.db, taskId, 200));
    const plain = lines.filter((l) => parseTrainerLine(l.line).kind === 'log');
    const tail = plain.slice(-TAIL_LINES_IN_ERROR).map((l) => l.line);
    return tail.length ? `last output:\n${tail.join('\n')}` : undefined;
  }

  /** SIGTERM the trainer's process group; SIGKILL after the grace period. Idempotent. */
  stop(taskId: string): void {
    const run = this.runs.get(taskId);
    if (!run || run.finished) return;
    if (run.stopRequested && run.killTimer) return;
    run.stopRequested = true;
    if (run.pid === null) return; // launch() stops it as soon as the pid is known
    this.log.info(`stopping task ${taskId}: SIGTERM to process group ${run.pid}`);
    signalGroup(run.pid, 'SIGTERM');
    run.killTimer = setTimeout(() => {
      if (run.finished) return;
      this.log.warn(`task ${taskId}: trainer ignored SIGTERM for ${this.config.killGraceMs} ms, sending SIGKILL`);
      signalGroup(run.pid!, 'SIGKILL');
    }, this.config.killGraceMs);
    run.killTimer.unref();
  }

  private armDeadline(task: TaskRecord): void {
    if (!task.deadlineAt || task.stop || this.deadlines.has(task.id)) return;
    const ms = Math.max(0, Date.parse(task.deadlineAt) - Date.now());
    // setTimeout overflows past ~24.8 days: re-arm in steps.
    const timer = setTimeout(() => {
      this.deadlines.delete(task.id);
      if (Date.parse(task.deadlineAt!) > Date.now()) return this.armDeadline(task);
      void this.command(task.id, { type: 'expire' }, 'timeout').then((r) => {
        if (r?.stop) this.stop(task.id);
      });
    }, Math.min(ms, 2 ** 31 - 1));
    timer.unref();
    this.deadlines.set(task.id, timer);
  }

  private clearDeadline(taskId: string): void {
    const t = this.deadlines.get(taskId);
    if (t) clearTimeout(t);
    this.deadlines.delete(taskId);
  }

  /**
   * Run a command for a task; an illegal one (the task moved on: cancelled, already
   * recorded) is expected in races and returns null. Database errors are retried until the
   * database is back, so no trainer outcome is ever dropped.
   */
  /** `logLines`, if any, are stored with the command's events, or on their own if it is refused. */
  private async command(taskId: string, command: TaskCommand, actor: string, logLines: LogLine[] = []): Promise<TaskRecord | null> {
    try {
      const r = await this.retry(() => this.store.execute(taskId, command, { actor }, { logLines }));
      if (logLines.length) this.events.emit('logs', taskId);
      // Tasks this transaction put on a slot (the one this task freed): start them now rather
      // than when the service's dispatch has loaded them again (observe() claims a task
      // synchronously, so the dispatch's later notification finds it taken).
      for (const t of r.started) this.observe(t);
      return r.task;
    } catch (err) {
      if (logLines.length) {
        await this.storeLines(taskId, logLines);
        this.events.emit('logs', taskId);
        // Storing the lines may be what failed (a line the database refused): the command, a
        // trainer's exit above all, must not be lost with them, or the task holds its slot for good.
        if (!(err instanceof IllegalCommandError) && !(err instanceof TaskNotFoundError) && !this.closed) {
          this.log.warn(`task ${taskId}: ${command.type} with its last output failed (${(err as Error).message}); recording it without them`);
          return this.command(taskId, command, actor);
        }
      }
      if (err instanceof IllegalCommandError) return (await loadTask(this.store.db, taskId).catch(() => null)) ?? null;
      this.log.error(`task ${taskId}: ${command.type} failed: ${(err as Error).message}`);
      return null;
    }
  }

  /**
   * Store output lines outside any command: all together, else one statement per line, so a line
   * the database refuses (whatever the reason) costs only itself. Database outages are retried.
   */
  private async storeLines(taskId: string, lines: LogLine[]): Promise<void> {
    try {
      await this.retry(() => appendLogLines(this.store.db, taskId, lines));
      return;
    } catch (err) {
      if (this.closed) return; // read again from output.jsonl on re-attach
      this.log.warn(`task ${taskId}: storing ${lines.length} output lines failed (${(err as Error).message}); storing them one by one`);
    }
    let refused = 0;
    for (const line of lines) {
      await this.retry(() => appendLogLines(this.store.db, taskId, [line])).catch(() => refused++);
    }
    if (refused) this.log.error(`task ${taskId}: the database refused ${refused} output line(s); they are only in ${FILES.output}`);
  }

  private async retry<T>(fn: () => Promise<T>): Promise<T> {
    for (let delay = 100; ; delay = Math.min(delay * 2, 5000)) {
      try {
        return await fn();
      } catch (err) {
        if (err instanceof IllegalCommandError || this.closed || !isConnectionError(err)) throw err;
        this.log.warn(`database unavailable (${(err as Error).message}); retrying in ${delay} ms`);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** Stop following trainers (they keep running; the next start re-attaches). */
  close(): void {
    this.closed = true;
    this.standby?.dispose();
    this.standby = null;
    for (const run of this.runs.values()) {
      run.tailer?.stop();
      if (run.killTimer) clearTimeout(run.killTimer);
    }
    for (const t of this.deadlines.values()) clearTimeout(t);
    this.runs.clear();
    this.deadlines.clear();
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Outputs live under <data>/outputs; the API refuses anything that would leave it. */
export function outputsRoot(config: Pick<ServiceConfig, 'storage'>): string {
  return resolve(config.storage.dataRoot, 'outputs');
}

export function resolveOutputDir(config: Pick<ServiceConfig, 'storage'>, task: Pick<TaskRecord, 'spec'>): string {
  return resolve(outputsRoot(config), task.spec.outputDir);
}

function resolveArgv0(cmd: string, cwd: string): string {
  if (cmd === 'node') return process.execPath;
  return cmd.includes('/') && !isAbsolute(cmd) ? join(cwd, cmd) : cmd;
}
