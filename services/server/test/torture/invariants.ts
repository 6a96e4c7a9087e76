// The product's promise as checks: no task lost, doubled or stuck. Each check reads through the
// public API, the event log, or /proc, and records a violation naming the invariant, the step of
// the scenario and what was seen. The numbers follow docs/RELIABILITY.md:
//   1 devices: an exclusive holder alone on its GPU, gangs whole; a live trainer only for a task that holds devices
//   2 FIFO: queued tasks start in the order of their TaskQueued positions
//   3 one state: each task in exactly one state; an ended task has exactly one terminal event
//   4 read models == fold of the log
//   5 streams: versions 1..n contiguous, positions grow with version, nothing lost or doubled
//   6 no stall: never a free unblocked slot for long while tasks are queued
import { ACTIVE_STATUSES, isActive, isTerminal, type StoredTaskEvent, type TaskRecord, type TaskStatus } from '@trainyard/domain';
import { compareWithLog, readAll, readCommittedAfter, TAIL_START, type Database, type Difference, type TailCursor } from '@trainyard/store';
import { callApi, scanProcesses, stillAlive, type ApiResult, type OurProcess } from './procs';

const TERMINAL_TYPES = new Set(['TaskCompleted', 'TaskFailed', 'TaskCancelled']);

export interface Violation {
  invariant: string;
  step: string;
  message: string;
  atMs: number;
}

export class Violations {
  readonly list: Violation[] = [];
  private readonly seen = new Set<string>();
  constructor(
    private readonly t0: number,
    private readonly log: (m: string) => void,
  ) {}

  /** Record once per (invariant, key): a stall seen at ten steps is one violation. */
  add(invariant: string, step: string, message: string, key = message): void {
    const k = `${invariant}|${key}`;
    if (this.seen.has(k)) return;
    this.seen.add(k);
    const v = { invariant, step, message, atMs: Date.now() - this.t0 };
    this.list.push(v);
    this.log(`VIOLATION [${invariant}] at ${step}: ${message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Invariants 3 and 5 over the log, and 2 (FIFO) over the whole of it.

export class LogTracker {
  readonly streams = new Map<string, StoredTaskEvent[]>();
  private readonly positions = new Set<string>();
  private readonly dirty = new Set<string>();
  events = 0;

  /** Events as a tail delivered them (Postgres) or a full read (then call reset first). */
  add(events: readonly StoredTaskEvent[], v: Violations, step: string): void {
    for (const e of events) {
      if (this.positions.has(e.position)) {
        v.add('5', step, `event at position ${e.position} (${e.type} of ${e.streamId} v${e.version}) was delivered twice by the log tail`);
        continue;
      }
      this.positions.add(e.position);
      const list = this.streams.get(e.streamId) ?? [];
      list.push(e);
      this.streams.set(e.streamId, list);
      this.dirty.add(e.streamId);
      this.events++;
    }
  }

  reset(): void {
    this.streams.clear();
    this.positions.clear();
    this.dirty.clear();
    this.events = 0;
  }

  /** Check the streams that changed since the last call (all with `all`). */
  checkStreams(v: Violations, step: string, all = false): void {
    const ids = all ? [...this.streams.keys()] : [...this.dirty];
    this.dirty.clear();
    for (const id of ids) checkStream(id, this.streams.get(id) ?? [], v, step);
  }

  terminalEvents(id: string): StoredTaskEvent[] {
    return (this.streams.get(id) ?? []).filter((e) => TERMINAL_TYPES.has(e.type));
  }

  /** Every event in position order. */
  all(): StoredTaskEvent[] {
    return [...this.streams.values()].flat().sort((a, b) => cmpPos(a.position, b.position));
  }
}

function cmpPos(a: string, b: string): number {
  const d = BigInt(a) - BigInt(b);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

function checkStream(id: string, events: StoredTaskEvent[], v: Violations, step: string): void {
  const byVersion = [...events].sort((a, b) => a.version - b.version);
  let terminals = 0;
  for (let i = 0; i < byVersion.length; i++) {
    const e = byVersion[i]!;
    if (e.version !== i + 1) {
      v.add('5', step, `stream ${id}: versions are not 1..n contiguous (${byVersion.map((x) => x.version).join(',')})`, `${id}-versions`);
      break;
    }
    if (i > 0 && cmpPos(e.position, byVersion[i - 1]!.position) <= 0)
      v.add(
        '5',
        step,
        `stream ${id}: position ${e.position} of v${e.version} does not grow past ${byVersion[i - 1]!.position} of v${e.version - 1}`,
        `${id}-pos`,
      );
    if (i === 0 && e.type !== 'TaskSubmitted') v.add('5', step, `stream ${id} starts with ${e.type}, not TaskSubmitted`, `${id}-first`);
    if (terminals > 0 && e.type !== 'TaskDeleted')
      v.add('3', step, `stream ${id}: ${e.type} (v${e.version}) after its terminal event`, `${id}-after-terminal`);
    if (TERMINAL_TYPES.has(e.type)) terminals++;
  }
  if (terminals > 1) v.add('3', step, `stream ${id} has ${terminals} terminal events`, `${id}-terminals`);
}

/**
 * Invariant 2. A task X waits from its TaskQueued until its TaskAssigned (or TaskCancelled).
 * While X waits, no task that came after it may be assigned: one queued after X, or one that
 * never queued (a new submission takes a free slot only behind everything queued).
 */
export function checkFifo(tracker: LogTracker, v: Violations, step: string): number {
  interface T {
    id: string;
    queued: string | null;
    assigned: string | null;
    waitEnd: string | null;
  }
  const tasks: T[] = [];
  for (const [id, events] of tracker.streams) {
    const queued = events.find((e) => e.type === 'TaskQueued')?.position ?? null;
    const assigned = events.find((e) => e.type === 'TaskAssigned')?.position ?? null;
    const cancelled = events.find((e) => e.type === 'TaskCancelled')?.position ?? null;
    tasks.push({ id, queued, assigned, waitEnd: assigned ?? cancelled });
  }
  const waiting = tasks.filter((t) => t.queued !== null);
  const assigned = tasks.filter((t) => t.assigned !== null).sort((a, b) => cmpPos(a.assigned!, b.assigned!));
  let pairs = 0;
  for (const x of waiting) {
    for (const y of assigned) {
      if (y.id === x.id) continue;
      const a = y.assigned!;
      if (cmpPos(a, x.queued!) <= 0) continue;
      if (x.waitEnd !== null && cmpPos(a, x.waitEnd) >= 0) break;
      pairs++;
      const keyY = y.queued ?? a;
      if (cmpPos(keyY, x.queued!) > 0) {
        v.add(
          '2',
          step,
          `task ${y.id} (${y.queued ? `queued at ${y.queued}` : 'never queued'}) was assigned at ${a} while ${x.id}, queued earlier at ${x.queued}, still waited`,
          `${x.id}-${y.id}`,
        );
      }
    }
  }
  return pairs;
}

// ---------------------------------------------------------------------------------------------
// The final verdict, once everything has ended.

/** A submission as the run made it: its key, whether (and as what) it was acknowledged. */
export interface Submission {
  key: string;
  id: string | null;
  acked: boolean;
  attempts: number;
}

/** What the run planned for a task and did to it: the only ways it may end. */
export interface PlannedOutcome extends Submission {
  expect: 'complete' | 'exit' | 'signal';
  cancel: 'acked' | 'conflict' | 'unknown' | null;
  trainerKilled: boolean;
}

/**
 * Invariant 3 over the task list: no task listed twice, each acknowledged submission exactly one
 * task (by its idempotency key), no task the run did not submit. Returns the tasks by id.
 */
export function checkSubmissions(
  tasks: readonly TaskRecord[],
  subs: readonly Submission[],
  v: Violations,
  step: string,
): Map<string, TaskRecord> {
  const byId = new Map<string, TaskRecord>();
  for (const t of tasks) {
    if (byId.has(t.id)) v.add('3', step, `task ${t.id} is listed twice`);
    byId.set(t.id, t);
  }
  const byKey = new Map<string, TaskRecord[]>();
  for (const t of tasks) byKey.set(t.spec.idempotencyKey ?? '', [...(byKey.get(t.spec.idempotencyKey ?? '') ?? []), t]);
  for (const sub of subs.filter((s) => s.attempts > 0)) {
    const found = byKey.get(sub.key) ?? [];
    if (sub.acked && !byId.has(sub.id!)) v.add('3', step, `acknowledged task ${sub.id} (${sub.key}) is missing`);
    if (found.length > 1) v.add('3', step, `submission ${sub.key} became ${found.length} tasks: ${found.map((t) => t.id).join(', ')}`);
  }
  const keys = new Set(subs.map((s) => s.key));
  for (const t of tasks) if (!keys.has(t.spec.idempotencyKey ?? '')) v.add('3', step, `task ${t.id} was never submitted by this run`);
  return byId;
}

/**
 * Each listed task against its stream: it has one (4); an ended task has exactly the one
 * terminal event of its status, an open one none (3); never assigned or spawned twice (1).
 */
export function checkTaskStreams(tasks: readonly TaskRecord[], tracker: LogTracker, v: Violations, step: string): void {
  for (const t of tasks) {
    const terminals = tracker.terminalEvents(t.id);
    const events = tracker.streams.get(t.id) ?? [];
    if (!events.length) v.add('4', step, `task ${t.id} has no events in the log`);
    if (isTerminal(t.status)) {
      const want = { COMPLETED: 'TaskCompleted', FAILED: 'TaskFailed', CANCELLED: 'TaskCancelled' }[t.status as 'COMPLETED'];
      if (terminals.length !== 1 || terminals[0]!.type !== want)
        v.add('3', step, `task ${t.id} is ${t.status} with terminal events [${terminals.map((e) => e.type).join(', ')}]`);
    } else if (terminals.length)
      v.add('3', step, `task ${t.id} is ${t.status} but its stream has ${terminals.map((e) => e.type).join(', ')}`);
    if (events.filter((e) => e.type === 'TaskAssigned').length > 1 || events.filter((e) => e.type === 'TrainerSpawned').length > 1)
      v.add('1', step, `task ${t.id} was assigned/spawned more than once: ${events.map((e) => e.type).join(', ')}`);
  }
}

/** `outcome`: the chaos may end a task only in the ways it caused (a kill or a restart changes no outcome). */
export function checkOutcomes(subs: readonly PlannedOutcome[], byId: ReadonlyMap<string, TaskRecord>, v: Violations, step: string): void {
  for (const sub of subs.filter((s) => s.acked)) {
    const t = byId.get(sub.id!);
    if (!t || outcomeOk(sub, t)) continue;
    v.add(
      'outcome',
      step,
      `task ${t.id} (${sub.key}, expected ${sub.expect}${sub.cancel ? `, cancel ${sub.cancel}` : ''}${sub.trainerKilled ? ', trainer killed' : ''}) ended ${t.status}${t.error ? ` (${t.error.reason}: ${t.error.message.split('\n')[0]})` : ''}`,
    );
  }
}

/** 5 at the end: the log tail (read as the service reads it) delivered every committed event. */
export function checkTailDelivered(all: readonly StoredTaskEvent[], tailed: readonly StoredTaskEvent[], v: Violations, step: string): void {
  const delivered = new Set(tailed.map((e) => e.position));
  const missed = all.filter((e) => !delivered.has(e.position));
  if (missed.length)
    v.add(
      '5',
      step,
      `the log tail never delivered ${missed.length} committed event(s), e.g. ${missed
        .slice(0, 3)
        .map((e) => `${e.type}@${e.position}`)
        .join(', ')}`,
    );
}

/** 3 when the run settles: every submission it sent was acknowledged in the end (retried with its key). */
export function checkAcknowledged(subs: readonly Submission[], v: Violations, step: string): void {
  for (const s of subs.filter((x) => x.attempts > 0 && !x.acked))
    v.add('3', step, `submission ${s.key} was never acknowledged after ${s.attempts} attempts`);
}

/** 6 when the run settles: a task still open this long after the last action is stuck. */
export function checkSettled(open: readonly TaskRecord[], settleMs: number, v: Violations, step: string): void {
  for (const t of open)
    v.add(
      '6',
      step,
      `task ${t.id} is still ${t.status} ${Math.round(settleMs / 1000)} s after the last action (devices ${t.devices.map((g) => g.deviceId).join('+') || 'none'}, trainer ${t.trainer?.pid ?? 'none'}, runner ${t.runnerId})`,
      `${t.id}-unsettled`,
    );
}

/** 1 at the end: no trainer or shepherd of the run's data folders outlives every task. */
export function checkNoneLeft(left: readonly OurProcess[], v: Violations, step: string): void {
  for (const p of left) v.add('1', step, `${p.kind} pid ${p.pid} of task ${p.taskId} is still alive after every task ended`);
}

/** `crash` at the end: a service asked to stop (SIGTERM) exits 0. */
export function checkCleanStop(name: string, exit: { code: number | null; signal: string | null }, v: Violations, step: string): void {
  if (exit.code !== 0) v.add('crash', step, `${name} did not stop cleanly on SIGTERM (exit ${exit.code}, signal ${exit.signal})`);
}

/** `db-outage`: with the database away, system.health answers, saying it is not ok because of the database. */
export function checkOutageHealth(
  h: ApiResult<{ ok: boolean; database?: string; error: string | null }>,
  v: Violations,
  step: string,
): void {
  if (!h.ok) v.add('db-outage', step, `system.health failed while the database was down: ${h.error.code} ${h.error.message}`);
  else if (h.data.ok || !h.data.error || !/database/i.test(h.data.error))
    v.add('db-outage', step, `system.health while the database was down: ok=${h.data.ok}, error=${JSON.stringify(h.data.error)}`);
}

/**
 * `db-outage`: with the database away, a procedure is refused SERVICE_UNAVAILABLE, its message
 * naming the database (a submission's refusal need only be SERVICE_UNAVAILABLE: it is retried).
 */
export function checkOutageRefusal(proc: string, r: ApiResult<unknown>, v: Violations, step: string, namesCause = true): void {
  if (r.ok || r.error.code !== 'SERVICE_UNAVAILABLE' || (namesCause && !/database/i.test(r.error.message)))
    v.add(
      'db-outage',
      step,
      `${proc} while the database was down: ${r.ok ? 'answered as if nothing was wrong' : `${r.error.code}: ${r.error.message.slice(0, 200)}`}`,
      proc,
    );
}

function outcomeOk(sub: PlannedOutcome, t: TaskRecord): boolean {
  const s: TaskStatus = t.status;
  if (sub.cancel === 'acked') return s === 'CANCELLED';
  const natural =
    (sub.expect === 'complete' && s === 'COMPLETED') ||
    (sub.expect === 'exit' && s === 'FAILED' && t.error?.reason === 'exit') ||
    (sub.expect === 'signal' && s === 'FAILED' && t.error?.reason === 'signal');
  if (natural) return true;
  if (sub.cancel && s === 'CANCELLED') return true;
  if (sub.trainerKilled && s === 'FAILED' && t.error?.reason === 'signal') return true;
  return false;
}

// ---------------------------------------------------------------------------------------------
// Reading the log.

/** Tails the log of a Postgres schema over a direct connection, as the service's feed does. */
export class PostgresLog {
  private cursor: TailCursor = TAIL_START;
  constructor(readonly db: Database) {}

  async readNew(): Promise<StoredTaskEvent[]> {
    const out: StoredTaskEvent[] = [];
    for (;;) {
      const { events, cursor } = await readCommittedAfter(this.db.db, this.cursor, 5000);
      this.cursor = cursor;
      out.push(...events);
      if (events.length < 5000) return out;
    }
  }

  /** The whole log in position order (to compare with what the tail delivered). */
  async readAll(): Promise<StoredTaskEvent[]> {
    const out: StoredTaskEvent[] = [];
    for await (const e of readAll(this.db.db)) out.push(e);
    return out;
  }

  /** Invariant 4 on one consistent snapshot (works while the service runs). */
  async compare() {
    return this.db.db.transaction((tx) => compareWithLog(tx), { isolationLevel: 'repeatable read', accessMode: 'read only' });
  }
}

/**
 * Invariant 4: every difference between the read models and the fold of the log is a violation
 * (once per task or slot). `context` says when it was seen (after a stop, by a rebuild).
 */
export function reportDifferences(differences: readonly Difference[], v: Violations, step: string, context = ''): void {
  for (const d of differences) {
    const fields = d.fields ? ` fields ${d.fields.join(',')}` : '';
    const seen =
      d.live !== undefined || d.rebuilt !== undefined
        ? `: live ${JSON.stringify(d.live)?.slice(0, 300)} vs log ${JSON.stringify(d.rebuilt)?.slice(0, 300)}`
        : '';
    v.add('4', step, `${context}${d.kind} ${d.id}${fields}${seen}`, `${d.kind}-${d.id}`);
  }
}

/** The whole log through the API (events.list, paged by position). Use when nothing is writing, or accept a moving picture. */
export async function readLogViaApi(url: string): Promise<StoredTaskEvent[] | null> {
  const out: StoredTaskEvent[] = [];
  let cursor: string | null = null;
  for (;;) {
    const r: ApiResult<{ events: StoredTaskEvent[]; nextCursor: string | null }> = await callApi(url, 'events.list', {
      limit: 1000,
      cursor,
    });
    if (!r.ok) return null;
    out.push(...r.data.events);
    if (!r.data.nextCursor) return out;
    cursor = r.data.nextCursor;
  }
}

/** Every task through the API (tasks.list pages, deleted ones too are not listed). */
export async function listAllTasks(url: string, statuses?: TaskStatus[]): Promise<TaskRecord[] | null> {
  const out: TaskRecord[] = [];
  let cursor: string | null = null;
  for (;;) {
    const r: ApiResult<{ items: TaskRecord[]; nextCursor: string | null }> = await callApi(url, 'tasks.list', {
      limit: 200,
      cursor,
      ...(statuses ? { status: statuses } : {}),
    });
    if (!r.ok) return null;
    out.push(...r.data.items);
    if (!r.data.nextCursor) return out;
    cursor = r.data.nextCursor;
  }
}

// ---------------------------------------------------------------------------------------------
// Invariant 1 (slots and processes) and 6 (stall), live.

interface QueueView {
  devices: { id: string; holders: { taskId: string }[]; blockedReason: string | null }[];
  queued: { position: number; task: TaskRecord }[];
  queuedCount: number;
}

export class LiveChecker {
  private stallSince: number | null = null;
  private preparingSince = new Map<string, number>();
  checks = 0;

  constructor(
    private readonly v: Violations,
    private readonly slots: number,
    private readonly dataDirs: readonly string[],
    private readonly opts: { stallMs: number; stuckPreparingMs: number },
  ) {}

  /** Forget timers: after a restart of the service or the database the clock starts again. */
  resetClocks(): void {
    this.stallSince = null;
    this.preparingSince.clear();
  }

  /**
   * Slots and trainers. `urls` are the instances to ask (any one answers for the database).
   * Returns false when no instance answered (nothing checked).
   */
  async check(urls: readonly string[], step: string): Promise<boolean> {
    const procs1 = scanProcesses(this.dataDirs).filter((p) => p.kind === 'trainer');
    let active: TaskRecord[] | null = null;
    let queue: QueueView | null = null;
    let url: string | null = null;
    for (const u of urls) {
      active = await listAllTasks(u, [...ACTIVE_STATUSES]);
      if (!active) continue;
      const q = await callApi<QueueView>(u, 'queue.get', undefined);
      if (!q.ok) {
        active = null;
        continue;
      }
      queue = q.data;
      url = u;
      break;
    }
    if (!active || !queue || !url) return false;
    this.checks++;
    const now = Date.now();

    // Devices: an exclusive holder alone on its device, every active task holds all it asked
    // for (gangs whole), never more exclusive holders than devices.
    const holders = active.filter((t) => t.devices.length > 0);
    const exclusive = holders.filter((t) => t.devices.some((g) => g.exclusive));
    if (exclusive.length > this.slots)
      this.v.add(
        '1',
        step,
        `${exclusive.length} tasks hold a device exclusively with ${this.slots} device(s): ${exclusive.map((t) => `${t.id}@${t.devices.map((g) => g.deviceId).join('+')}`).join(', ')}`,
      );
    const byDevice = new Map<string, { id: string; exclusive: boolean }[]>();
    for (const t of holders)
      for (const g of t.devices) byDevice.set(g.deviceId, [...(byDevice.get(g.deviceId) ?? []), { id: t.id, exclusive: g.exclusive }]);
    for (const [device, hs] of byDevice)
      if (hs.length > 1 && hs.some((h) => h.exclusive))
        this.v.add('1', step, `${device} is held by ${hs.length} tasks, one exclusively: ${hs.map((h) => h.id).join(', ')}`);
    for (const t of active) {
      if (t.devices.length === 0) this.v.add('1', step, `task ${t.id} is ${t.status} but holds no device`, `${t.id}-noslot`);
      else if (t.devices.length !== t.spec.resources.gpus)
        this.v.add('1', step, `task ${t.id} asked for ${t.spec.resources.gpus} GPUs and holds ${t.devices.length}`, `${t.id}-gang`);
    }

    // Trainers: alive only for a task that holds devices; never two for one task; never more than devices.
    const activeById = new Map(active.map((t) => [t.id, t]));
    const perTask = new Map<string, OurProcess[]>();
    for (const p of procs1) perTask.set(p.taskId, [...(perTask.get(p.taskId) ?? []), p]);
    for (const [taskId, ps] of perTask) {
      const t = activeById.get(taskId);
      if (!t || t.devices.length === 0) {
        // The trainer ends before its task is recorded as ended: alive after the read is a violation.
        const still = ps.filter(stillAlive);
        if (still.length) {
          const rec = await callApi<TaskRecord>(url, 'tasks.get', { id: taskId });
          const status = rec.ok ? rec.data.status : `unknown (${rec.error.code})`;
          if (!rec.ok || !isActive(rec.data.status) || rec.data.devices.length === 0) {
            if (still.some(stillAlive))
              this.v.add(
                '1',
                step,
                `trainer pid ${still.map((p) => p.pid).join(',')} is alive for task ${taskId}, which is ${status} and holds no device`,
                `${taskId}-orphan`,
              );
          }
        }
      } else if (t.trainer) {
        const strangers = ps.filter((p) => p.pid !== t.trainer!.pid && stillAlive(p));
        if (strangers.length)
          this.v.add(
            '1',
            step,
            `task ${taskId} records trainer pid ${t.trainer.pid} but pid ${strangers.map((p) => p.pid).join(',')} also trains it`,
            `${taskId}-stranger`,
          );
      }
    }
    const together = procs1.filter(stillAlive); // alive at the scan and now: alive at the same time
    const tasksTogether = new Map<string, number>();
    for (const p of together) tasksTogether.set(p.taskId, (tasksTogether.get(p.taskId) ?? 0) + 1);
    for (const [id, n] of tasksTogether) if (n > 1) this.v.add('1', step, `${n} live trainers for task ${id}`, `${id}-double`);
    if (together.length > this.slots)
      this.v.add(
        '1',
        step,
        `${together.length} trainers alive at once with ${this.slots} device(s): tasks ${together.map((p) => p.taskId).join(', ')}`,
      );

    // Stall: a free, unblocked device while tasks wait (every task here asks for one whole GPU).
    const free = queue.devices.filter((d) => !d.holders.length && !d.blockedReason).length;
    if (free > 0 && queue.queuedCount > 0) {
      this.stallSince ??= now;
      if (now - this.stallSince > this.opts.stallMs)
        this.v.add(
          '6',
          step,
          `${free} free device(s) while ${queue.queuedCount} task(s) queued for ${now - this.stallSince} ms (head ${queue.queued[0]?.task.id})`,
          `stall-${this.stallSince}`,
        );
    } else this.stallSince = null;

    // Stuck: a task given devices whose trainer never gets recorded.
    const seen = new Set<string>();
    for (const t of active) {
      if (t.trainer) continue;
      seen.add(t.id);
      const since = this.preparingSince.get(t.id) ?? now;
      this.preparingSince.set(t.id, since);
      if (now - since > this.opts.stuckPreparingMs)
        this.v.add(
          '6',
          step,
          `task ${t.id} has held ${t.devices.map((g) => g.deviceId).join('+')} for ${now - since} ms without a trainer`,
          `${t.id}-stuck`,
        );
    }
    for (const id of this.preparingSince.keys()) if (!seen.has(id)) this.preparingSince.delete(id);
    return true;
  }
}
