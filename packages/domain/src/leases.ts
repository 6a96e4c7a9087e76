// Instances that do not come back. Each instance holds a lease: a heartbeat row it renews while
// it runs. A peer takes over an instance whose lease expired and puts its tasks back (the
// lifecycle's `abandon`), so its devices are freed and its tasks resume elsewhere from their
// checkpoints. Unreachable is not dead: lease ages are measured by the database's clock, and
// only an instance that saw the database without a break for a whole lease term judges others,
// so a database outage (which stops every heartbeat alike) never expires anyone. Pure: the
// service carries these decisions out, the store's statements enforce the same rule again.
import { isActive } from './status';
import type { TaskCommand } from './lifecycle';
import type { TaskRecord } from './task';

/** A lease as the database shows it. Ages are by the database's clock. */
export interface LeaseView {
  runnerId: string;
  /** Since its last heartbeat. */
  ageMs: number;
  /** Since its heartbeats began without a break (a gap of more than a third of the term breaks them). */
  unbrokenMs: number;
  /** The instance that took it over (its tasks go back to the queue), or null while it is its holder's. */
  takenBy: string | null;
}

export interface LeaseDecision {
  /** Leases to mark taken by `self` (each only if still expired when marked). */
  takeOver: string[];
  /** Instances whose remaining active tasks are put back now (taken over, by this pass or earlier). */
  abandon: string[];
}

/** How far apart two heartbeats may be and still count as unbroken. */
export function leaseGapMs(leaseMs: number): number {
  return Math.floor(leaseMs / 3);
}

/** How often an instance renews its lease: several times a term, so a late beat or two expire nobody. */
export function heartbeatEveryMs(leaseMs: number): number {
  return Math.max(50, Math.floor(leaseMs / 6));
}

/**
 * What `self` does about the other leases, given its own as just renewed (null: it could not be
 * renewed). Nothing unless its own lease is fresh and unbroken for a whole term; then every other
 * lease not renewed for a whole term is taken over, and the tasks of taken leases go back.
 */
export function decideLeases(self: string, own: LeaseView | null, leases: readonly LeaseView[], leaseMs: number): LeaseDecision {
  const none: LeaseDecision = { takeOver: [], abandon: [] };
  if (!own || own.takenBy !== null || own.ageMs > leaseGapMs(leaseMs) || own.unbrokenMs < leaseMs) return none;
  const expired = leases.filter((l) => l.runnerId !== self && l.ageMs > leaseMs);
  return {
    takeOver: expired.filter((l) => l.takenBy === null).map((l) => l.runnerId),
    abandon: expired.map((l) => l.runnerId),
  };
}

export interface AbandonCommand {
  taskId: string;
  command: Extract<TaskCommand, { type: 'abandon' }>;
}

/** The words a task taken back from `lost` carries. */
export function lostRunnerMessage(lost: LeaseView, leaseMs: number): string {
  return (
    `instance ${lost.runnerId} stopped renewing its lease (last heartbeat ${Math.round(lost.ageMs / 1000)} s ago, ` +
    `term ${Math.round(leaseMs / 1000)} s); its task was taken back`
  );
}

/** The `abandon` for each active task `lost` still holds. */
export function decideAbandon(lost: LeaseView, tasks: Iterable<TaskRecord>, leaseMs: number, requeue: boolean): AbandonCommand[] {
  const message = lostRunnerMessage(lost, leaseMs);
  const out: AbandonCommand[] = [];
  for (const t of tasks) {
    if (!isActive(t.status) || t.runnerId !== lost.runnerId) continue;
    out.push({ taskId: t.id, command: { type: 'abandon', runnerId: lost.runnerId, message, requeue } });
  }
  return out;
}
