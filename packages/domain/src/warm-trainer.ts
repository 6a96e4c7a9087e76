// Warm trainers: whether the runner keeps a trainer started ahead of need (in standby: imported,
// no GPU touched, waiting for its assignment) beside its standby shepherd, and when it retires
// one. Pure: the runner (services/server/src/runner/standby-pool.ts) gathers the facts and
// carries the decision out.
//
// The rules (issue 19): one warm trainer, for a slot that is about to free, i.e. while tasks are
// queued; retired when nothing is queued, when the trainer command changed, or after it waited
// `idleLimitMs`; not started again for a command whose warm trainers keep dying before they are
// ready (a trainer that does not do standby), nor after an idle retirement until the next launch.

/** Consecutive warm trainers of one command that died before they were ready, after which that command is not warmed. */
export const WARM_NEVER_READY_LIMIT = 2;

export interface WarmTrainerFacts {
  /** How long a warm trainer may wait for a task; 0: warm trainers are off. */
  idleLimitMs: number;
  /** Tasks queued now (as last counted). */
  queued: number;
  /** The trainer command a launch would run now (argv, folder and environment, as one key). */
  command: string;
  /** Consecutive warm trainers of `command` that died before they were ready. */
  neverReady: number;
  /** A warm trainer was retired for waiting too long, and no task was launched since. */
  idleRetiredSinceLaunch: boolean;
  /** The standby shepherd now: none, a plain one, or one with a warm trainer. */
  standby: null | { warm: null } | { warm: { command: string; state: 'starting' | 'ready' | 'died'; waitedMs: number } };
}

export type WarmTrainerReason = 'nothing queued' | 'command changed' | 'idle' | 'never ready' | 'off' | 'tasks queued';

export type WarmTrainerDecision =
  /** Leave the standby as it is. */
  | { action: 'keep' }
  /** No standby: start one, with a warm trainer or without. */
  | { action: 'start'; warm: boolean }
  /** Replace the standby (its warm trainer retired, or a warm one wanted). */
  | { action: 'replace'; warm: boolean; reason: WarmTrainerReason };

/** Whether a warm trainer is wanted at all now, and if not, why. */
export function warmWanted(
  f: Pick<WarmTrainerFacts, 'idleLimitMs' | 'queued' | 'neverReady' | 'idleRetiredSinceLaunch'>,
): true | WarmTrainerReason {
  if (f.idleLimitMs <= 0) return 'off';
  if (f.neverReady >= WARM_NEVER_READY_LIMIT) return 'never ready';
  if (f.queued <= 0) return 'nothing queued';
  if (f.idleRetiredSinceLaunch) return 'idle';
  return true;
}

export function decideWarmTrainer(f: WarmTrainerFacts): WarmTrainerDecision {
  const wanted = warmWanted(f);
  if (f.standby === null) return { action: 'start', warm: wanted === true };
  const w = f.standby.warm;
  if (w === null || w.state === 'died') {
    // A plain standby (or one whose warm trainer died while waiting: it is plain now).
    return wanted === true ? { action: 'replace', warm: true, reason: 'tasks queued' } : { action: 'keep' };
  }
  if (wanted !== true) return { action: 'replace', warm: false, reason: wanted };
  if (w.command !== f.command) return { action: 'replace', warm: true, reason: 'command changed' };
  if (w.waitedMs >= f.idleLimitMs) return { action: 'replace', warm: false, reason: 'idle' };
  return { action: 'keep' };
}
