// The runner (the supervisor): turns "task assigned to this instance" into a trainer process,
// and the trainer's output and exit into commands. Trainers run under a detached shepherd that
// writes to files, so a crash of this process loses nothing: `recover` re-attaches on start-up.
//
// It decides nothing itself: every observation of a run (what recovery finds, a launch's result,
// a committed command, an output line, the exit, the deadline, a stop, the end of the kill grace)
// goes to the domain's run decider (decideRun, packages/domain/src/run.ts), and `decide` carries
// out what it returns. The simulation (packages/sim) drives the same decider. Beside it:
// runner/launcher.ts (starting a trainer), runner/standby-pool.ts, runner/deadlines.ts and
// runner/output-buffer.ts.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import {
  decideRun,
  IllegalCommandError,
  isActive,
  linesMayHaveFailed,
  startRun,
  withLastOutput,
  type RunCommand,
  type RunFacts,
  type RunObservation,
  type RunOutcome,
  type RunState,
  type StopReason,
  type TaskCommand,
  type TaskRecord,
} from '@trainyard/domain';
import {
  appendLogLines,
  countQueued,
  isConnectionError,
  lastLogLines,
  lastLogSeq,
  listActive,
  loadTask,
  type LogLine,
  type TaskStore,
} from '@trainyard/store';
import type { ServiceConfig } from './config';
import { findShepherds, isSameProcessAlive, signalGroup } from './trainer/proc';
import { observeLine, parseTrainerLine, ProgressThrottle } from './trainer/protocol';
import { readExit, readTrainerInfo, FILES, type ExitInfo, type OutputLine } from './trainer/run-folder';
import { RunTailer } from './trainer/tailer';
import { Deadlines } from './runner/deadlines';
import { DATASET_DIR, launchTrainer, resolveOutputDir, trainerBase } from './runner/launcher';
import { LOG_FLUSH_MS, outputBuffer, type OutputBuffer } from './runner/output-buffer';
import { SpareRunFolder } from './runner/spare-run-folder';
import { StandbyPool } from './runner/standby-pool';
import { errorText } from './log';

/** A run this instance is in charge of: the run decider's state of it, and the IO that carries its decisions out. */
interface Run {
  state: RunState;
  /** The task as last committed by this run (what follow() starts from). */
  task: TaskRecord;
  tailer: RunTailer | null;
  killTimer: NodeJS.Timeout | null;
  /** The preempt grace (after SIGUSR1), when preempting. */
  preemptTimer: NodeJS.Timeout | null;
  /** The trainer's output not stored yet (while it is followed). */
  output: OutputBuffer | null;
  /** The task was taken from this instance (its lease expired): nothing more is recorded for it. */
  disowned?: boolean;
  /** Commands decided for lines read with the exit, appended in the exit's transaction (RunCommand.withExit). */
  withExit?: RunCommand[];
}

/** What the caller of decide() goes on with (a recovery step). */
interface Next {
  recover?: TaskRecord;
  launch?: boolean;
  outcome?: RunOutcome;
}

/** Stored line numbers of attempt n start after (n − 1) × this (an attempt stores far fewer lines: TRAINYARD_LOG_MAX_BYTES_PER_TASK). */
const ATTEMPT_SEQ_STRIDE = 10_000_000;
export interface RunnerLog {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/** Lines of output quoted in a failed task's error message. */
const TAIL_LINES_IN_ERROR = 12;

export class Runner {
  private readonly runs = new Map<string, Run>();
  /** Each held task's deadline: the run decider is told when it passes. */
  private readonly deadlines = new Deadlines((task) => this.deadlinePassed(task));
  /** Emits 'logs' (taskId) when lines were stored, for live log subscriptions. */
  readonly events = new EventEmitter();
  private closed = false;
  /** A shepherd started ahead of need and handed the next launch (see StandbyPool). */
  private readonly standbys: StandbyPool;
  /** The next launch's run folder, made ahead of need (see SpareRunFolder). */
  private readonly spareRunFolder: SpareRunFolder;

  constructor(
    private readonly store: TaskStore,
    private readonly config: ServiceConfig,
    private readonly log: RunnerLog,
  ) {
    this.events.setMaxListeners(0);
    // A trainer started ahead of need waits in it while tasks are queued (warm trainers).
    this.standbys = new StandbyPool(config.runsDir, (msg) => log.warn(msg), {
      idleLimitMs: config.warmTrainerIdleMs,
      spec: () => trainerBase(config),
      queued: () => countQueued(store.db),
      info: (msg) => log.info(msg),
    });
    this.spareRunFolder = new SpareRunFolder(config.runsDir, config.runnerId, [DATASET_DIR], (msg) => log.warn(msg));
  }

  /** PIDs of trainers this instance runs (to tell our GPU processes from other programs'). */
  ourPids(): Set<number> {
    return new Set([...this.runs.values()].flatMap((r) => (r.state.pid ? [r.state.pid] : [])));
  }

  /** Which task each of those trainer pids runs. */
  taskOfPid(): Map<number, string> {
    return new Map([...this.runs].flatMap(([taskId, r]) => (r.state.pid ? [[r.state.pid, taskId] as const] : [])));
  }

  get activeCount(): number {
    return this.runs.size;
  }

  runDirOf(task: Pick<TaskRecord, 'id' | 'attempt'>): string {
    return join(this.config.runsDir, task.id, `attempt-${task.attempt}`);
  }

  /** Whether this instance runs the task and has seen it at `version` or later. */
  runsAt(taskId: string, version: number): boolean {
    const run = this.runs.get(taskId);
    return run !== undefined && run.task.version >= version;
  }

  /** React to a task's new state, whoever committed it (this instance or another). */
  observe(task: TaskRecord): void {
    if (this.closed) return;
    if (task.runnerId !== this.config.runnerId) {
      // Another instance holds it now (this one's lease was taken over): our trainer must go.
      const run = this.runs.get(task.id);
      if (run && run.task.attempt <= task.attempt) this.disown(task.id, `task ${task.id} is now held by ${task.runnerId ?? 'the queue'}`);
      return;
    }
    if (!isActive(task.status)) return;
    const run = this.runs.get(task.id);
    // Written by someone else (a stop asked for): the run's next command is decided on this.
    if (run && run.task.attempt === task.attempt && task.version > run.task.version) run.task = task;
    if (!run) void this.settle(task, this.claim(task));
    this.deadlines.arm(task);
    if (task.stop) this.stop(task.id, task.stop.reason);
  }

  /** The queue changed (a task queued, cancelled or held): a warm trainer may be wanted, or no longer. */
  queueChanged(): void {
    if (!this.closed) this.standbys.nudge();
  }

  /** Start-up: re-attach to trainers that still run, settle those that ended, start the rest. */
  async recover(): Promise<Record<RunOutcome, string[]>> {
    const report: Record<RunOutcome, string[]> = { reattached: [], settled: [], launched: [], failed: [] };
    this.standbys.ensure();
    this.spareRunFolder.start();
    for (const task of await listActive(this.store.db)) {
      if (task.runnerId !== this.config.runnerId || this.runs.has(task.id)) continue;
      report[await this.settle(task, this.claim(task))].push(task.id);
      this.deadlines.arm(task);
      if (task.stop) this.stop(task.id, task.stop.reason);
    }
    return report;
  }

  /** Take charge of a task synchronously, so two notifications never start two trainers. */
  private claim(task: TaskRecord): Run {
    const run: Run = { state: startRun(task, this.runDirOf(task)), task, tailer: null, killTimer: null, preemptTimer: null, output: null };
    this.runs.set(task.id, run);
    return run;
  }

  /**
   * Bring one active task of ours to where it should be, from what its run folder says (the run
   * decider decides: a live trainer is followed, an ended one settled, a vanished one failed,
   * and a task whose trainer was never started gets one now).
   */
  private async settle(task: TaskRecord, run: Run): Promise<RunOutcome> {
    for (;;) {
      run.task = task;
      const facts = await this.runFacts(task, run.state.runDir);
      const next = await this.decide(run, { type: 'recovery', task, facts });
      if (next.launch) {
        await this.launch(task, run);
        return 'launched';
      }
      if (next.recover) {
        task = next.recover;
        continue;
      }
      return next.outcome ?? 'failed';
    }
  }

  /**
   * Decide what the observation means for the run (decideRun) and carry it out: the run's new
   * state (an ended run's kill timer and deadline are disarmed first), the commands in order
   * (each one's record observed back), then the effects.
   */
  private async decide(run: Run, obs: RunObservation): Promise<Next> {
    if (run.disowned) return {};
    const d = decideRun(run.state, obs);
    const taskId = run.state.taskId;
    const ending = run.state.phase !== 'ended' && d.run.phase === 'ended';
    run.state = d.run;
    if (ending) {
      if (run.killTimer) clearTimeout(run.killTimer);
      if (run.preemptTimer) clearTimeout(run.preemptTimer);
      this.deadlines.clear(taskId);
    }
    const next: Next = d.outcome ? { outcome: d.outcome } : {};
    for (const c of d.commands) {
      if (c.withExit) {
        (run.withExit ??= []).push(c);
        run.output?.hold(true);
        continue;
      }
      // Events in the order of their lines: held reports go before any other command but the exit.
      if (!c.withLines) await this.appendHeld(run);
      if (c.flushFirst) await run.output?.flush();
      let command: TaskCommand = c.command;
      if (c.quoteLastLines && command.type === 'fail') {
        const last = await this.retry(() => lastLogLines(this.store.db, taskId, c.quoteLastLines!));
        command = {
          ...command,
          message: withLastOutput(
            command.message,
            last.map((l) => l.line),
          ),
        };
      }
      if (c.withFailureDetail && command.type === 'recordExit') {
        const detail = await this.failureDetail(taskId);
        if (detail) command = { ...command, detail };
      }
      const lines = c.withLines ? (run.output?.take() ?? []) : [];
      const preceding = c.withLines ? (run.withExit?.splice(0) ?? []) : [];
      const appended = await this.append(taskId, command, c.actor, lines, run.task.attempt, preceding, run.task);
      if (preceding.length) run.output?.hold(false);
      if ('refused' in appended) {
        Object.assign(next, await this.decide(run, { type: 'refused', command: { ...c, command }, reason: appended.refused }));
        continue;
      }
      if (appended.task) run.task = appended.task;
      Object.assign(next, await this.decide(run, { type: 'committed', command: command.type, task: appended.task }));
    }
    for (const e of d.effects) {
      switch (e.kind) {
        case 'awaitShepherd':
          await this.awaitShepherd(taskId, run.state.runDir);
          break;
        case 'recover':
          next.recover = e.task;
          break;
        case 'launch':
          next.launch = true;
          break;
        case 'follow':
          void this.follow(run);
          break;
        case 'storeLine':
          await run.output?.push({ seq: e.line.seq, stream: e.line.stream, line: e.line.line, at: new Date(e.line.t).toISOString() });
          break;
        case 'signal':
          signalGroup(run.state.pid!, e.signal);
          break;
        case 'armKill':
          run.killTimer = setTimeout(
            () => void this.decide(run, { type: 'graceOver', graceMs: this.config.killGraceMs }),
            this.config.killGraceMs,
          );
          run.killTimer.unref();
          break;
        case 'armPreempt':
          run.preemptTimer = setTimeout(() => void this.decide(run, { type: 'preemptGraceOver' }), this.config.preemptGraceMs);
          run.preemptTimer.unref();
          break;
        case 'release':
          if (this.runs.get(taskId) === run) this.runs.delete(taskId);
          break;
        case 'removeDatasetCopy':
          // The copy can be as large as the dataset; the original stays where it was submitted from.
          // Not awaited, and off the main thread: the next task on the freed device is launching
          // now, and a synchronous removal held it up (about a millisecond for a one-file copy).
          rm(join(run.state.runDir, DATASET_DIR), { recursive: true, force: true }).catch((err: Error) =>
            this.log.warn(`task ${taskId}: could not remove its dataset copy: ${errorText(err)}`),
          );
          break;
        case 'log':
          this.log[e.level](e.message);
          break;
        default: {
          const unhandled: never = e;
          throw new Error(`unhandled run effect ${JSON.stringify(unhandled)}`);
        }
      }
    }
    return next;
  }

  /** Appends the reports held for the exit's transaction (RunCommand.withExit) now, each on its own. */
  private async appendHeld(run: Run): Promise<void> {
    if (!run.withExit?.length) return;
    for (const c of run.withExit.splice(0)) {
      const r = await this.append(run.state.taskId, c.command, c.actor, [], run.task.attempt, [], run.task);
      if ('task' in r && r.task) run.task = r.task;
    }
    run.output?.hold(false);
  }

  private async runFacts(task: TaskRecord, runDir: string): Promise<RunFacts> {
    // No trainer and no run folder yet (a fresh assignment, the usual case): nothing to read, and
    // no shepherd can exist for it, so the launch goes ahead without file reads or a /proc scan.
    const unstarted = !task.trainer && !existsSync(runDir);
    const trainerFile = task.trainer || unstarted ? null : await readTrainerInfo(runDir);
    const trainerAlive = task.trainer?.startTime ? isSameProcessAlive(task.trainer.pid, task.trainer.startTime) : false;
    // A trainer that just died may still be having its exit written by the shepherd.
    const exitFile = trainerAlive || unstarted ? null : task.trainer ? await this.waitForExitFile(runDir, 2000) : await readExit(runDir);
    const shepherdAlive = !task.trainer && !unstarted && !trainerFile && !exitFile ? findShepherds(runDir).length > 0 : false;
    return { trainerFile, exitFile, trainerAlive, shepherdAlive };
  }

  /**
   * A shepherd of this run is alive but has not reported a trainer yet (it is starting up):
   * wait until it does, writes an exit, or is gone. One that reports nothing for a minute is
   * hung: it is killed, so that the run can be launched again without two trainers.
   */
  private async awaitShepherd(taskId: string, runDir: string): Promise<void> {
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

  /** Start the task's trainer and tell the run decider how that went. */
  private async launch(task: TaskRecord, run: Run): Promise<void> {
    let launched;
    try {
      launched = await launchTrainer(task, run.state.runDir, this.config, this.standbys, this.spareRunFolder, this.log);
    } catch (err) {
      this.log.error(`launching task ${task.id} failed: ${errorText(err)}`);
      launched = { failed: `could not start the trainer: ${(err as Error).message}` };
    }
    // A launch that fails at once (its dataset gone) commits the failure, which starts the next
    // queued task, whose launch fails at once too. On PGlite (in this process, synchronous)
    // nothing in that chain waits for I/O: the service answered no request until the whole
    // queue had failed. A turn of the event loop after each failed launch lets requests in (a
    // launch that starts a trainer waits for it, on I/O, and needs none).
    if ('failed' in launched) await new Promise((r) => setImmediate(r));
    // Taken from this instance while it started: the trainer belongs to nobody, so it goes.
    if (run.disowned && 'pid' in launched) signalGroup(launched.pid, 'SIGKILL');
    // Its spawn is recorded, then it is followed (and stopped, if that was asked meanwhile).
    await this.decide(run, 'failed' in launched ? { type: 'launchFailed', message: launched.failed } : { type: 'launched', ...launched });
  }

  /** Tail the trainer's output to the end and tell the run decider each line and the exit. */
  private async follow(run: Run): Promise<void> {
    const task = run.task;
    // Each attempt numbers its lines from 1 in its own run folder; stored, they follow the
    // earlier attempts' (a preempted task's next attempt must not overwrite or skip its lines).
    const base = (task.attempt - 1) * ATTEMPT_SEQ_STRIDE;
    const fromSeq = Math.max(0, (await this.retry(() => lastLogSeq(this.store.db, task.id))) - base);
    const outputDir = resolveOutputDir(this.config, task);
    const artifactLimits = { maxPerTask: this.config.artifactsMaxPerTask, maxPathChars: this.config.artifactPathMaxChars };
    const throttle = new ProgressThrottle();
    const output = outputBuffer(async (lines) => {
      await this.storeLines(task.id, lines);
      this.events.emit('logs', task.id);
    });
    run.output = output;
    const flushTimer = setInterval(() => void output.timerFlush(), LOG_FLUSH_MS);
    const onLine = async (local: OutputLine, final: boolean) => {
      const { obs, refusedCheckpoint } = observeLine(local, {
        seqBase: base,
        throttle,
        outputDir,
        artifactsSoFar: run.state.artifacts.length,
        limits: artifactLimits,
      });
      if (refusedCheckpoint) this.log.warn(`task ${task.id}: refused a checkpoint its trainer reported: ${refusedCheckpoint}`);
      await this.decide(run, final ? { ...obs, final } : obs);
    };
    const tailer = new RunTailer(run.state.runDir, fromSeq, onLine);
    run.tailer = tailer;
    tailer.start();
    let exit: ExitInfo | 'vanished';
    try {
      exit = await Promise.race([tailer.exited, this.watchShepherd(run, task)]);
    } catch (err) {
      this.log.error(`following task ${task.id} failed: ${errorText(err)}`);
      return;
    } finally {
      clearInterval(flushTimer);
      tailer.stop();
    }
    // A failure quotes the stored output, so everything is stored first. A clean exit stores its
    // last lines in the transaction that records it (one commit fewer between this trainer and
    // the next); either way every line is stored no later than the task's final event.
    if (exit === 'vanished' || exit.code !== 0) {
      // The failure quotes stored lines: reports held for the exit's transaction go first.
      await this.appendHeld(run);
      await output.flush();
    } else await output.settled();
    if (this.closed || run.disowned) return; // lines not stored yet are read again from output.jsonl on re-attach
    await this.decide(run, exit === 'vanished' ? { type: 'vanished' } : { type: 'exited', exit });
  }

  /**
   * The shepherd writes exit.json when the trainer ends; if the shepherd itself was killed
   * (OOM killer, kill -9 of the group), no exit.json ever comes. Notice a trainer that is gone
   * with no exit status (it vanished) instead of waiting forever.
   */
  private watchShepherd(run: Run, task: TaskRecord): Promise<'vanished'> {
    const startTime = task.trainer?.startTime;
    return new Promise((resolve) => {
      let goneSince: number | null = null;
      const timer = setInterval(async () => {
        if (run.state.phase === 'ended' || this.closed || run.tailer === null) return clearInterval(timer);
        const pid = run.state.pid;
        const alive = pid !== null && (startTime ? isSameProcessAlive(pid, startTime) : processExists(pid));
        if (alive) return void (goneSince = null);
        goneSince ??= Date.now();
        if (Date.now() - goneSince < 5000 || (await readExit(run.state.runDir))) return;
        clearInterval(timer);
        resolve('vanished');
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

  /** SIGTERM the trainer's process group; SIGKILL after the grace period (the run decider decides). Idempotent. */
  stop(taskId: string, reason?: StopReason): void {
    const run = this.runs.get(taskId);
    // Synchronous: a stop decision appends nothing, so its signal is sent before this returns.
    if (run) void this.decide(run, { type: 'stop', ...(reason ? { reason } : {}) });
  }

  /**
   * Give up a run whose task this instance no longer holds (its lease was taken over; the task
   * went back to the queue or to another instance): its trainer is stopped (SIGTERM, SIGKILL
   * after the kill grace) and nothing of it is recorded any more, since the task's stream now
   * belongs to its next attempt. Every run, when `taskId` is null.
   */
  disown(taskId: string | null, why: string): string[] {
    const out: string[] = [];
    for (const [id, run] of [...this.runs]) {
      if (taskId !== null && id !== taskId) continue;
      run.disowned = true;
      this.runs.delete(id);
      this.deadlines.clear(id);
      run.tailer?.stop();
      if (run.killTimer) clearTimeout(run.killTimer);
      if (run.preemptTimer) clearTimeout(run.preemptTimer);
      out.push(id);
      const pid = run.state.pid;
      const startTime = run.task.trainer?.startTime;
      this.log.warn(`${why}: stopping its trainer${pid ? ` (process group ${pid})` : ''} here`);
      if (!pid) continue;
      signalGroup(pid, 'SIGTERM');
      setTimeout(() => {
        if (startTime ? isSameProcessAlive(pid, startTime) : processExists(pid)) signalGroup(pid, 'SIGKILL');
      }, this.config.killGraceMs).unref();
    }
    return out;
  }

  /** A held task's deadline passed: the run decider says what follows (expire, then stop). */
  private deadlinePassed(task: TaskRecord): void {
    const run = this.runs.get(task.id);
    if (run) void this.decide(run, { type: 'deadline' });
    else void this.command(task.id, { type: 'expire' }, 'timeout'); // (not held here: nothing to stop)
  }

  /**
   * Run a command for a task; an illegal one (the task moved on: cancelled, already
   * recorded) is expected in races and returns null. Database errors are retried until the
   * database is back, so no trainer outcome is ever dropped.
   */
  private async command(taskId: string, command: TaskCommand, actor: string): Promise<TaskRecord | null> {
    const r = await this.append(taskId, command, actor, []);
    return 'refused' in r ? null : r.task; // (never refused: no lines)
  }

  /**
   * As command(), with `logLines` stored in the same transaction. If it fails, the lines are
   * stored on their own; when the lines may be what failed (a line the database refused), the
   * answer is `refused` and the run decider decides what follows (the command again, alone).
   */
  private async append(
    taskId: string,
    command: TaskCommand,
    actor: string,
    logLines: LogLine[],
    attempt?: number,
    preceding: readonly RunCommand[] = [],
    /** The task as this run last recorded it (the store decides on it without reading the task, while it is current). */
    known?: TaskRecord,
  ): Promise<{ task: TaskRecord | null } | { refused: string }> {
    const holder = attempt === undefined ? {} : { holder: { runnerId: this.config.runnerId, attempt } };
    const before = preceding.map((p) => ({ command: p.command, actor: p.actor }));
    try {
      const r = await this.retry(() =>
        this.store.execute(taskId, command, { actor }, { logLines, ...holder, preceding: before, ...(known ? { known } : {}) }),
      );
      if (logLines.length) this.events.emit('logs', taskId);
      // Tasks this transaction put on devices (those this task freed): start them now rather
      // than when the service's dispatch has loaded them again (observe() claims a task
      // synchronously, so the dispatch's later notification finds it taken).
      for (const t of r.started) this.observe(t);
      return { task: r.task };
    } catch (err) {
      if (preceding.length && !this.closed) {
        // Together they failed (a report the task no longer takes, a line the database refused):
        // each report on its own, as it would have gone, then the command as usual.
        for (const p of preceding) await this.append(taskId, p.command, p.actor, [], attempt);
        return this.append(taskId, command, actor, logLines, attempt);
      }
      if (logLines.length) {
        await this.storeLines(taskId, logLines);
        this.events.emit('logs', taskId);
        if (linesMayHaveFailed(err) && !this.closed) return { refused: (err as Error).message };
      }
      if (err instanceof IllegalCommandError) {
        const now = (await loadTask(this.store.db, taskId).catch(() => null)) ?? null;
        // Taken from this instance meanwhile: its trainer goes, and nothing more is recorded.
        if (now && attempt !== undefined && (now.runnerId !== this.config.runnerId || now.attempt !== attempt)) {
          this.disown(taskId, `task ${taskId}: ${err.message}`);
          return { task: null };
        }
        return { task: now };
      }
      this.log.error(`task ${taskId}: ${command.type} failed: ${errorText(err)}`);
      return { task: null };
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
      this.log.warn(`task ${taskId}: storing ${lines.length} output lines failed (${errorText(err)}); storing them one by one`);
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
        this.log.warn(`database unavailable (${errorText(err)}); retrying in ${delay} ms`);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** Stop following trainers (they keep running; the next start re-attaches). */
  close(): void {
    this.closed = true;
    this.standbys.close();
    this.spareRunFolder.close();
    for (const run of this.runs.values()) {
      run.tailer?.stop();
      if (run.killTimer) clearTimeout(run.killTimer);
      if (run.preemptTimer) clearTimeout(run.preemptTimer);
    }
    this.deadlines.close();
    this.runs.clear();
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
