// The run decider: what a runner does for one run it is in charge of, when something is observed
// (a recovery look at the run folder, a launch's result, a committed command, a protocol line,
// the trainer's exit or disappearance, the deadline, a stop request, the end of the kill grace).
// Pure: no IO, no clocks. The real runner (services/server/src/runner.ts) and the deterministic
// simulation (packages/sim) both drive it and carry out what it decides; neither decides itself.
//
// How a decision is carried out, in this order:
//   1. `run` replaces the runner's state of the run (a run whose `phase` became 'ended' has no
//      kill timer and no deadline any more: the runner disarms them before anything else);
//   2. `commands` are appended to the task's stream, one after another (`flushFirst`: the output
//      buffered so far is stored before; `withLines`: the output not yet stored goes in the same
//      transaction); each one's resulting record (null: the command failed) is observed back
//      as `{ type: 'committed' }`, and that decision carried out in turn (a command whose lines
//      made it fail is observed as `{ type: 'refused' }` once the lines are stored apart);
//   3. `effects` are performed, in order.
import type { FailureReason, StopReason, TaskRecord, TaskStatus } from './task';
import type { TaskCommand, TaskCommandType } from './lifecycle';
import { decideRecovery, type RecoveryAction, type RunFacts } from './recovery';
import { IllegalCommandError, TaskNotFoundError } from './errors';

/**
 * Whether a command that carried the run's output lines may have failed because of them (a line
 * the database refused): then the runner stores the lines apart and tells the decider
 * (`{ type: 'refused' }`), which tries the command again alone. A refusal by the lifecycle, or a
 * task that is gone, is not about the lines. The runner and the simulation both ask here.
 */
export function linesMayHaveFailed(err: unknown): boolean {
  return !(err instanceof IllegalCommandError) && !(err instanceof TaskNotFoundError);
}

/** What the runner remembers of one run (in memory: a crash forgets it, recovery rebuilds it). */
export interface RunState {
  taskId: string;
  runDir: string;
  /** recovering: deciding from the run folder; launching: a trainer was started, its spawn not yet recorded; following: its output is read; ended: its exit was decided. */
  phase: 'recovering' | 'launching' | 'following' | 'ended';
  /** The task's status as this run last saw it (PREPARING until the trainer's training phase). */
  status: TaskStatus;
  /** The trainer's pid (its process group), once known. */
  pid: number | null;
  /** A stop was asked for: deferred until the pid is known, or SIGTERM sent. */
  stopRequested: boolean;
  /** SIGTERM was sent and SIGKILL follows after the grace period. */
  killArmed: boolean;
  /** Preempting: SIGUSR1 was sent; SIGTERM follows its checkpoint line, or the preempt grace. */
  checkpointAsked: boolean;
  /** Artifacts recorded for the task (a repeated report is not recorded again). */
  artifacts: readonly string[];
  /** A refused artifact was reported to the service log already (once per run). */
  artifactWarned: boolean;
}

/** The task as the runner takes charge of it. */
export type RunTask = Pick<TaskRecord, 'id' | 'status' | 'trainer' | 'artifacts'>;

export function startRun(task: RunTask, runDir: string): RunState {
  return {
    taskId: task.id,
    runDir: task.trainer?.runDir ?? runDir,
    phase: 'recovering',
    status: task.status,
    pid: task.trainer?.pid ?? null,
    stopRequested: false,
    killArmed: false,
    checkpointAsked: false,
    artifacts: [...task.artifacts],
    artifactWarned: false,
  };
}

/** One line of trainer output, as the shepherd wrote it (t: epoch ms). */
export interface RunOutputLine {
  seq: number;
  stream: 'stdout' | 'stderr';
  line: string;
  t: number;
}

/** A protocol message of a trainer (the parse lives with the protocol, in the server). */
export type RunMessage =
  | { type: 'phase'; phase: 'training' }
  | { type: 'progress'; epoch?: number; totalEpochs?: number; step?: number; totalSteps?: number; loss?: number; learningRate?: number }
  | { type: 'artifact'; path: string }
  | { type: 'checkpoint'; path: string; step: number };

/** Whether a reported artifact may be recorded, and as which path (checked by the runner against its output folder and limits). */
export type ArtifactCheck = { ok: true; path: string } | { ok: false; reason: string };

export interface RunExit {
  code: number | null;
  signal: string | null;
  /** The trainer could not be started (its shepherd says why). */
  error?: string;
}

export type RunObservation =
  /** What the task record, the run folder and the process table show (start-up or a new assignment). */
  | { type: 'recovery'; task: TaskRecord; facts: RunFacts }
  /** A launched shepherd reported its trainer. */
  | { type: 'launched'; pid: number; startTime: string }
  /** The trainer could not be started (the dataset was refused, the shepherd failed, ...). */
  | { type: 'launchFailed'; message: string }
  /** A command this run appended was committed (the task it left), or failed (null). */
  | { type: 'committed'; command: TaskCommandType; task: TaskRecord | null }
  /**
   * A command appended with the run's output not stored yet failed for a reason other than the
   * task's state (a line the database refused, say); the lines were then stored on their own.
   */
  | { type: 'refused'; command: RunCommand; reason: string }
  /**
   * A line of output. `message`: the protocol message it carries (stdout only); `progressDue`:
   * whether the progress throttle lets this report be recorded; `artifact`: the check of a
   * reported artifact.
   */
  | {
      type: 'line';
      line: RunOutputLine;
      message?: RunMessage;
      progressDue?: boolean;
      artifact?: ArtifactCheck;
      /** Read once the trainer's exit was written (exit.json was there): only its last lines and its exit follow. */
      final?: boolean;
    }
  /** The trainer ended (exit status from its shepherd); all its output is stored or buffered. */
  | { type: 'exited'; exit: RunExit }
  /** The trainer is gone and its shepherd with it: no exit status will come. */
  | { type: 'vanished' }
  /** The task's deadline passed. */
  | { type: 'deadline' }
  /** Someone asked the task to stop (cancel, timeout, preempt: then it may checkpoint first). */
  | { type: 'stop'; reason?: StopReason }
  /** The preempt grace (after SIGUSR1) is over without a checkpoint line. */
  | { type: 'preemptGraceOver' }
  /** The kill grace period (graceMs) after SIGTERM is over. */
  | { type: 'graceOver'; graceMs: number };

export type RunActor = 'runner' | 'trainer' | 'timeout' | 'recovery';

export interface RunCommand {
  command: TaskCommand;
  actor: RunActor;
  /** Store the output buffered so far before appending (it precedes this event). */
  flushFirst?: true;
  /** Store the output not stored yet in the same transaction (else on its own if refused). */
  withLines?: true;
  /** Append the last N stored output lines to the failure message (see withLastOutput). */
  quoteLastLines?: number;
  /** A failed exit: its `detail` is the last plain lines of the stored output, read just before. */
  withFailureDetail?: true;
  /**
   * Append it in the transaction of the run's exit, just before the exit's own events: its line
   * came with the exit, and the next task's start waits for that transaction alone.
   */
  withExit?: true;
}

export type RunOutcome = 'reattached' | 'settled' | 'launched' | 'failed';

export type RunEffect =
  /** A shepherd of this run folder is starting: wait until it reports or ends. */
  | { kind: 'awaitShepherd' }
  /** Look at the run again (fresh facts) with this task record, and decide again. */
  | { kind: 'recover'; task: TaskRecord }
  /** Start a trainer (stage the dataset, spawn its shepherd) and observe the result. */
  | { kind: 'launch' }
  /** Read the trainer's output and watch for its exit. */
  | { kind: 'follow' }
  /** Store one output line (in order with the others). */
  | { kind: 'storeLine'; line: RunOutputLine }
  /** Send a signal to the trainer's process group. */
  | { kind: 'signal'; signal: 'SIGTERM' | 'SIGKILL' | 'SIGUSR1' }
  /** Observe `preemptGraceOver` after the preempt grace period. */
  | { kind: 'armPreempt' }
  /** Observe `graceOver` after the kill grace period. */
  | { kind: 'armKill' }
  /** The runner no longer holds the run (another notification may take the task again). */
  | { kind: 'release' }
  /** Remove the run folder's copy of the dataset. */
  | { kind: 'removeDatasetCopy' }
  | { kind: 'log'; level: 'info' | 'warn'; message: string };

export interface RunDecision {
  run: RunState;
  commands: RunCommand[];
  effects: RunEffect[];
  /** For a recovery: how it ended, once known (start-up reports it). */
  outcome?: RunOutcome;
}

export interface RunDeciderOptions {
  /** The recovery rule (replaceable to plant a bug in the simulation). */
  decideRecovery?: (task: Pick<TaskRecord, 'trainer'>, facts: RunFacts) => RecoveryAction;
}

/** Lines of stored output quoted when a trainer is found lost at recovery. */
export const LOST_TAIL_LINES = 3;

/** A lost trainer's failure message with its last stored output, if any. */
export function withLastOutput(message: string, lines: readonly string[]): string {
  return lines.length ? `${message}. Last output: ${lines.join(' | ')}` : message;
}

const none = (run: RunState): RunDecision => ({ run, commands: [], effects: [] });

export function decideRun(run: RunState, obs: RunObservation, options: RunDeciderOptions = {}): RunDecision {
  switch (obs.type) {
    case 'recovery':
      return decideRecoveryStep(run, obs.task, (options.decideRecovery ?? decideRecovery)(obs.task, obs.facts));

    case 'launched':
      return {
        run: { ...run, phase: 'launching', pid: obs.pid },
        commands: [{ command: { type: 'recordSpawn', pid: obs.pid, startTime: obs.startTime, runDir: run.runDir }, actor: 'runner' }],
        effects: [],
      };

    case 'launchFailed':
      // Released only once the failure is committed: a notification arriving in between must
      // not take the task again and fail it a second time with a vaguer message.
      return {
        run: { ...run, phase: 'ended' },
        commands: [{ command: { type: 'fail', reason: 'spawn', message: obs.message }, actor: 'runner' }],
        effects: [{ kind: 'release' }],
      };

    case 'committed':
      return decideCommitted(run, obs.command, obs.task);

    case 'refused':
      // The command, a trainer's exit above all, must not be lost with its lines, or the task
      // holds its slot for good: appended again on its own.
      return {
        run,
        commands: [{ command: obs.command.command, actor: obs.command.actor }],
        effects: [
          {
            kind: 'log',
            level: 'warn',
            message: `task ${run.taskId}: ${obs.command.command.type} with its last lines failed (${obs.reason}); recording it without them`,
          },
        ],
      };

    case 'line':
      return decideLine(run, obs);

    case 'exited':
    case 'vanished': {
      if (run.phase === 'ended') return none(run);
      const command: TaskCommand =
        obs.type === 'vanished'
          ? {
              type: 'fail',
              reason: 'lost',
              message: `trainer process ${run.pid} disappeared without an exit status (its shepherd was killed too)`,
            }
          : obs.exit.error
            ? { type: 'fail', reason: 'spawn' satisfies FailureReason, message: obs.exit.error }
            : { type: 'recordExit', exitCode: obs.exit.code, signal: obs.exit.signal };
      const failed = command.type === 'recordExit' && obs.type === 'exited' && obs.exit.code !== 0;
      return {
        run: { ...run, phase: 'ended', killArmed: false },
        commands: [{ command, actor: 'runner', withLines: true, ...(failed ? { withFailureDetail: true as const } : {}) }],
        // The copy can be as large as the dataset; the original stays where it was submitted from.
        effects: [{ kind: 'release' }, { kind: 'removeDatasetCopy' }],
      };
    }

    case 'deadline':
      // (A run that ended has no deadline armed; a task whose run was released may still expire.)
      if (run.phase === 'ended') return none(run);
      return { run, commands: [{ command: { type: 'expire' }, actor: 'timeout' }], effects: [] };

    case 'stop':
      return obs.reason === 'preempt' ? decidePreempt(run) : decideStop(run);

    case 'preemptGraceOver':
      if (run.phase === 'ended' || run.killArmed) return none(run);
      return decideStop(run);

    case 'graceOver':
      if (run.phase === 'ended' || run.pid === null) return none(run);
      return {
        run,
        commands: [],
        effects: [
          { kind: 'log', level: 'warn', message: `task ${run.taskId}: trainer ignored SIGTERM for ${obs.graceMs} ms, sending SIGKILL` },
          { kind: 'signal', signal: 'SIGKILL' },
        ],
      };
  }
}

function decideRecoveryStep(run: RunState, task: TaskRecord, action: RecoveryAction): RunDecision {
  run = { ...run, phase: 'recovering', status: task.status };
  switch (action.kind) {
    case 'recordSpawn':
      return {
        run,
        commands: [{ command: { type: 'recordSpawn', pid: action.pid, startTime: action.startTime, runDir: run.runDir }, actor: 'runner' }],
        effects: [],
      };
    case 'awaitShepherd':
      return {
        run,
        commands: [],
        effects: [
          {
            kind: 'log',
            level: 'info',
            message: `task ${run.taskId}: a shepherd for ${run.runDir} is starting; waiting for it instead of launching another`,
          },
          { kind: 'awaitShepherd' },
          { kind: 'recover', task },
        ],
      };
    case 'launch':
      return { run, commands: [], effects: [{ kind: 'launch' }], outcome: 'launched' };
    case 'failSpawn':
      return {
        run: { ...run, phase: 'ended' },
        commands: [{ command: { type: 'fail', reason: 'spawn', message: action.message }, actor: 'runner' }],
        effects: [{ kind: 'release' }],
        outcome: 'failed',
      };
    case 'follow':
    case 'settle':
      return {
        run: { ...run, phase: 'following', pid: task.trainer!.pid, artifacts: [...task.artifacts] },
        commands: [],
        effects: [{ kind: 'follow' }],
        outcome: action.kind === 'follow' ? 'reattached' : 'settled',
      };
    case 'failLost':
      return {
        run: { ...run, phase: 'ended' },
        commands: [
          { command: { type: 'fail', reason: 'lost', message: action.message }, actor: 'recovery', quoteLastLines: LOST_TAIL_LINES },
        ],
        effects: [{ kind: 'release' }],
        outcome: 'failed',
      };
  }
}

function decideCommitted(run: RunState, command: TaskCommandType, task: TaskRecord | null): RunDecision {
  switch (command) {
    case 'recordSpawn':
      if (run.phase === 'recovering') {
        // The spawn the shepherd reported is recorded: decide again from the new record.
        if (!task?.trainer) return { run: { ...run, phase: 'ended' }, commands: [], effects: [{ kind: 'release' }], outcome: 'failed' };
        return { run, commands: [], effects: [{ kind: 'recover', task }] };
      }
      if (run.phase === 'launching') {
        const following: RunState = {
          ...run,
          phase: 'following',
          ...(task ? { status: task.status, artifacts: [...task.artifacts] } : {}),
        };
        const decision: RunDecision = { run: following, commands: [], effects: [{ kind: 'follow' }] };
        // A stop that came while the trainer was starting is carried out now.
        if (!task?.stop && !run.stopRequested) return decision;
        const stop = decideStop({ ...following, stopRequested: false });
        return { ...stop, effects: [...decision.effects, ...stop.effects] };
      }
      return none(run);
    case 'startTraining':
      return task ? none({ ...run, status: task.status }) : none(run);
    case 'expire':
      return task?.stop ? decideStop(run) : none(run);
    default:
      return none(run);
  }
}

function decideLine(run: RunState, obs: Extract<RunObservation, { type: 'line' }>): RunDecision {
  const d = decideLineAlone(run, obs);
  if (!obs.final) return d;
  // A report read with the exit (the last progress, a checkpoint, an artifact) is recorded in the
  // exit's transaction; a phase change still goes first on its own (it flushes the output first).
  return { ...d, commands: d.commands.map((c) => (RIDES_WITH_EXIT.has(c.command.type) ? { ...c, withExit: true as const } : c)) };
}

/** Reports of a trainer's output that change nothing the run decides on after them. */
const RIDES_WITH_EXIT: ReadonlySet<TaskCommandType> = new Set(['recordProgress', 'recordCheckpoint', 'recordArtifact']);

function decideLineAlone(run: RunState, obs: Extract<RunObservation, { type: 'line' }>): RunDecision {
  const store: RunEffect = { kind: 'storeLine', line: obs.line };
  const m = obs.line.stream === 'stdout' ? obs.message : undefined;
  // Protocol messages become events before their line is stored: a crash in between replays
  // the line on re-attach, and the commands below are idempotent for it.
  if (m?.type === 'phase' && run.status === 'PREPARING')
    return { run, commands: [{ command: { type: 'startTraining' }, actor: 'trainer', flushFirst: true }], effects: [store] };
  if (m?.type === 'progress' && obs.progressDue) {
    const { epoch, totalEpochs, step, totalSteps, loss, learningRate } = m;
    const progress = {
      epoch: epoch ?? null,
      totalEpochs: totalEpochs ?? null,
      step: step ?? null,
      totalSteps: totalSteps ?? null,
      loss: loss ?? null,
      learningRate: learningRate ?? null,
    };
    return { run, commands: [{ command: { type: 'recordProgress', ...progress }, actor: 'trainer' }], effects: [store] };
  }
  if (m?.type === 'checkpoint') {
    const record: RunCommand = { command: { type: 'recordCheckpoint', path: m.path, step: m.step }, actor: 'trainer' };
    // Preempting: the checkpoint it was asked for is written, so stop it now.
    if (run.checkpointAsked && !run.killArmed) {
      const stop = decideStop(run);
      return { run: stop.run, commands: [record], effects: [store, ...stop.effects] };
    }
    return { run, commands: [record], effects: [store] };
  }
  if (m?.type === 'artifact' && obs.artifact) {
    const verdict = obs.artifact;
    if (!verdict.ok) {
      // Dropped, not fatal: the line is stored as a warning in its place (same seq, so a
      // re-attach stores the same), and the service log says it once per run.
      const warning: RunEffect = {
        kind: 'storeLine',
        line: { ...obs.line, stream: 'stderr', line: `[trainyard] artifact refused (${verdict.reason}): ${obs.line.line}` },
      };
      const log: RunEffect[] = run.artifactWarned
        ? []
        : [{ kind: 'log', level: 'warn', message: `task ${run.taskId}: refused an artifact its trainer reported: ${verdict.reason}` }];
      return { run: { ...run, artifactWarned: true }, commands: [], effects: [...log, warning] };
    }
    if (!run.artifacts.includes(verdict.path))
      return {
        run: { ...run, artifacts: [...run.artifacts, verdict.path] },
        commands: [{ command: { type: 'recordArtifact', path: verdict.path }, actor: 'trainer' }],
        effects: [store],
      };
  }
  return { run, commands: [], effects: [store] };
}

/**
 * Preempt: SIGUSR1 asks the trainer for a checkpoint; SIGTERM follows its checkpoint line or the
 * preempt grace. Without a pid yet it is a plain stop (nothing trained, nothing to save).
 */
function decidePreempt(run: RunState): RunDecision {
  if (run.phase === 'ended' || run.checkpointAsked || run.killArmed) return none(run);
  if (run.pid === null) return decideStop(run);
  return {
    run: { ...run, stopRequested: true, checkpointAsked: true },
    commands: [],
    effects: [
      { kind: 'log', level: 'info', message: `preempting task ${run.taskId}: SIGUSR1 (checkpoint now) to process group ${run.pid}` },
      { kind: 'signal', signal: 'SIGUSR1' },
      { kind: 'armPreempt' },
    ],
  };
}

/** SIGTERM to the trainer's process group, SIGKILL after the grace period. Idempotent. */
function decideStop(run: RunState): RunDecision {
  if (run.phase === 'ended') return none(run);
  if (run.stopRequested && run.killArmed) return none(run);
  // No pid yet: the stop is carried out as soon as the spawn is recorded.
  if (run.pid === null) return none({ ...run, stopRequested: true });
  return {
    run: { ...run, stopRequested: true, killArmed: true },
    commands: [],
    effects: [
      { kind: 'log', level: 'info', message: `stopping task ${run.taskId}: SIGTERM to process group ${run.pid}` },
      { kind: 'signal', signal: 'SIGTERM' },
      { kind: 'armKill' },
    ],
  };
}
