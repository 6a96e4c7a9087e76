// The scheduling policy: given the devices (with their holders) and the queue, which queued
// tasks start now on which devices, and why each of the others waits. Pure: time comes in as
// `now`, and every decision is a function of its input, so it can be explained and replayed.
//
// The model: a task asks for `gpus` devices (a gang: all at once or none), exclusively or
// shared. An exclusive task takes whole devices; shared tasks sit side by side on a device while
// their memory fits under its memory less a reserve and less what other programs hold. Devices
// are picked best-fit (the smallest that fits), so a small task takes a MIG instance before a
// whole GPU. A gang of more than one uses whole GPUs only: CUDA shows a process one MIG instance.
//
// Order: FIFO by queue position. With `backfill` (EASY, as Slurm's backfill scheduler): when the
// head of the queue cannot start, it gets a reservation (the earliest time its request fits,
// counting each running task as gone at its deadline, i.e. the timeout is the bound on its run
// time); a later task may start now only if it cannot delay that reservation: it ends (by its
// timeout) before the reserved start, or it uses nothing the head is reserved. The head's
// reserved start therefore never moves later, and every task reaches the head in turn.
import { DEFAULT_MEMORY_RESERVE, gb, type DeviceGrant, type DeviceView, type ResourceRequest } from './resources';

export interface QueuedTaskView {
  taskId: string;
  /** FIFO key: the log position of the task's TaskQueued event (null for a task not yet queued). */
  queuedPosition: string | null;
  request: ResourceRequest;
  /** Upper bound on the run time once started: the task's timeout. */
  timeoutMs: number;
  /** Who submitted it (fair share and quotas are per user); default: one anonymous user. */
  owner?: string;
  /** Its priority class's value: higher goes first. Default 0. */
  priority?: number;
}

/** What the policy knows of a user: their quota and their recent use. */
export interface Account {
  /** At most this many devices at once (null: no cap). */
  maxGpus: number | null;
  /** At most this many GPU-hours in the rolling window (null: no cap)… */
  gpuHoursCap: number | null;
  /** …of which this many are used. */
  gpuHoursUsed: number;
  /** Decayed GPU-seconds of past use (fair share; see docs/SCHEDULING.md). */
  usageGpuSeconds: number;
  /** Fair-share weight (default 1): a user of weight 2 is due twice the share. */
  weight: number;
}

/** Running devices count as this many seconds of use each in the fair-share order. */
export const FAIR_SHARE_HORIZON_S = 3600;

/**
 * Why a queued task waits. STARTING is never a policy's answer: a reader asking between two
 * passes is told so for a task the next pass starts.
 */
export const WAIT_CODES = [
  'WAITING_FOR_DEVICES',
  'RESERVED_FOR_HEAD',
  'EXTERNAL_MEMORY',
  'BEHIND_HEAD',
  'NEVER_FITS',
  'QUOTA',
  'HELD_BY_DEPLOYMENT',
  'STARTING',
] as const;
export type WaitCode = (typeof WAIT_CODES)[number];

export interface WaitReason {
  code: WaitCode;
  /** One sentence for people: what it waits for. */
  message: string;
  /** For the head with a reservation: when it will have started at the latest (epoch ms). */
  reservedStart: number | null;
}

/** What the policy saw when it placed a task: recorded with the assignment, so replay can explain it. */
export interface PlacementGrounds {
  policy: string;
  /** Tasks ahead of it in the queue when it started (they could not start). */
  ahead: number;
  /** True when it started ahead of a blocked head without delaying the head's reservation. */
  backfilled: boolean;
  /** The blocked head's reservation at the time, if any. */
  reservation: Reservation | null;
  /** Its priority value, and its owner's fair-share standing then (use / weight; lower goes first). */
  priority: number;
  share: number;
  /** Its granted devices as they were: total memory, held by other programs, held by our tasks. */
  devices: { deviceId: string; memoryMb: number; externalMemoryMb: number; heldMb: number; holders: number }[];
  reserveFraction: number;
}

export interface Reservation {
  taskId: string;
  /** Epoch ms; when the head is sure to fit (running tasks gone by their deadlines). */
  startAt: number;
  deviceIds: string[];
}

export interface Placement {
  taskId: string;
  devices: DeviceGrant[];
  grounds: PlacementGrounds;
}

export interface SchedulingInput {
  devices: readonly DeviceView[];
  /** In FIFO order (see fifoOrder). */
  queue: readonly QueuedTaskView[];
  now: number;
  /** Share of each device's memory never given to shared tasks; default DEFAULT_MEMORY_RESERVE. */
  reserveFraction?: number;
  /**
   * How long after its deadline a task may still hold its devices (it gets SIGTERM at the deadline
   * and SIGKILL this much later): every release time counts it. Default 0.
   */
  releaseGraceMs?: number;
  /** Users' quotas and use, by name; a user not here has no quota and no past use. */
  accounts?: ReadonlyMap<string, Account>;
  /**
   * Preempt running tasks for a head that cannot otherwise start: `priority` (or true) those of a
   * lower priority; `fair-share` also those of an equal priority whose owners hold more than their
   * fair share of the pool, for a head whose owner holds less. Default: none.
   */
  preemption?: boolean | PreemptionMode;
}

export const PREEMPTION_MODES = ['off', 'priority', 'fair-share'] as const;
export type PreemptionMode = (typeof PREEMPTION_MODES)[number];

/** A running task to stop (checkpoint and requeue) so that a head can start. */
export interface Preemption {
  taskId: string;
  /** The head it makes room for. */
  forTaskId: string;
  message: string;
  /** What the decision saw: recorded with the stop, so it can be explained later. */
  grounds: PreemptionGrounds;
}

/** A user's standing when a preemption was decided. */
export interface PreemptionUser {
  user: string;
  weight: number;
  /** Devices their running tasks held (tasks already stopping not counted). */
  held: number;
  /** Their fair share of the pool: devices × weight / the weights of every user with work. */
  fairShare: number;
  /** Their fair-share standing in the queue's order (decayed use per weight; lower goes first). */
  standing: number;
}

/**
 * Why a task was preempted. `priority`: the head outranks it. `fair-share`: same priority, and
 * the head's owner, with the head started, still holds no more than their fair share, while the
 * victim's owner, without the victim, still holds at least theirs (so the move never reverses).
 */
export interface PreemptionGrounds {
  rule: 'priority' | 'fair-share';
  head: { taskId: string; owner: string; priority: number; gpus: number };
  victim: { taskId: string; owner: string; priority: number; startedAt: number | null; gpus: number };
  /** Devices in the pool (those that take work). */
  pool: number;
  /** Every user with running or queued work then, by name. */
  users: PreemptionUser[];
  /** Every victim of this decision (never more than the head needs). */
  victims: string[];
}

export interface SchedulingDecision {
  assignments: Placement[];
  /** Why each task that does not start waits, by task id (built when first read). */
  readonly waiting: ReadonlyMap<string, WaitReason>;
  reservation: Reservation | null;
  /** Running tasks to preempt for the head (none unless `preemption`). */
  preemptions: Preemption[];
}

export interface SchedulingPolicy {
  readonly name: string;
  schedule(input: SchedulingInput): SchedulingDecision;
}

export const POLICY_NAMES = ['fifo', 'backfill'] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];

/** Strict FIFO: the queue starts in order, and a head that cannot start holds everyone behind it. */
export const fifoPolicy: SchedulingPolicy = { name: 'fifo', schedule: (input) => place(input, false, 'fifo') };
/** FIFO with EASY backfill (the default). */
export const backfillPolicy: SchedulingPolicy = { name: 'backfill', schedule: (input) => place(input, true, 'backfill') };

export function policyByName(name: PolicyName): SchedulingPolicy {
  return name === 'fifo' ? fifoPolicy : backfillPolicy;
}

/** A device as people read it in a reason: `GPU 1`, or `GPU 3 MIG 1g.10gb (gpu3/mig1)`. */
export function deviceLabel(d: Pick<DeviceView, 'id' | 'gpuIndex' | 'migProfile'>): string {
  return d.migProfile ? `GPU ${d.gpuIndex} MIG ${d.migProfile} (${d.id})` : `GPU ${d.gpuIndex}`;
}

/** Whether a request can ever be met by this inventory (all holders gone, nothing external). */
export function requestFits(
  devices: readonly Pick<DeviceView, 'memoryMb' | 'migProfile'>[],
  r: ResourceRequest,
  reserveFraction = DEFAULT_MEMORY_RESERVE,
): boolean {
  const room = (d: Pick<DeviceView, 'memoryMb'>) => (isShared(r) ? Math.floor(d.memoryMb * (1 - reserveFraction)) : d.memoryMb);
  const usable = devices.filter((d) => (r.gpus === 1 || d.migProfile === null) && (r.memoryMb === null || room(d) >= r.memoryMb));
  return usable.length >= r.gpus;
}

// ---------------------------------------------------------------------------------------------

/** Mutable capacity of one device during a pass. */
interface Cap {
  view: DeviceView;
  /** Memory a shared task may still take (reserve, external and holders deducted). */
  sharedFree: number;
  /** Memory an exclusive task could use (total less external). */
  wholeFree: number;
  holders: number;
  /** Exclusive holders (at most one, unless the log says otherwise). */
  exclusive: number;
  blocked: boolean;
}

const isShared = (r: ResourceRequest) => r.shared && r.memoryMb !== null;

function fitsOn(c: Cap, r: ResourceRequest): boolean {
  if (c.blocked || c.exclusive > 0) return false;
  if (r.gpus > 1 && c.view.migProfile !== null) return false;
  if (isShared(r)) return c.sharedFree >= r.memoryMb!;
  return c.holders === 0 && (r.memoryMb === null || c.wholeFree >= r.memoryMb);
}

/** Best fit: the smallest devices that fit, then by id; null when fewer than `gpus` fit. */
function pick(caps: readonly Cap[], r: ResourceRequest, allowed: (c: Cap) => boolean): Cap[] | null {
  const fit: Cap[] = [];
  for (const c of caps) if (fitsOn(c, r) && allowed(c)) fit.push(c);
  if (fit.length < r.gpus) return null;
  // With no memory figure the need is unknown: whole GPUs before MIG instances.
  const unknownNeed = r.memoryMb === null;
  fit.sort(
    (a, b) =>
      (unknownNeed ? Number(a.view.migProfile !== null) - Number(b.view.migProfile !== null) : 0) ||
      a.view.memoryMb - b.view.memoryMb ||
      (isShared(r) ? a.sharedFree - b.sharedFree : 0) ||
      compareIds(a.view.id, b.view.id),
  );
  return fit.slice(0, r.gpus);
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function take(c: Cap, r: ResourceRequest): DeviceGrant {
  const shared = isShared(r);
  const memoryMb = shared ? r.memoryMb! : c.view.memoryMb;
  if (shared) c.sharedFree -= memoryMb;
  else c.exclusive++;
  c.holders++;
  c.wholeFree = shared ? c.wholeFree - memoryMb : 0;
  return { deviceId: c.view.id, gpuIndex: c.view.gpuIndex, uuid: c.view.uuid, migProfile: c.view.migProfile, memoryMb, exclusive: !shared };
}

function capacities(devices: readonly DeviceView[], reserve: number): Cap[] {
  return devices.map((d) => {
    const held = d.holders.reduce((n, h) => n + h.memoryMb, 0);
    return {
      view: d,
      sharedFree: Math.floor(d.memoryMb * (1 - reserve)) - d.externalMemoryMb - held,
      wholeFree: d.memoryMb - d.externalMemoryMb - held,
      holders: d.holders.length,
      exclusive: d.holders.filter((h) => h.exclusive).length,
      blocked: d.blockedReason !== null,
    };
  });
}

interface Release {
  at: number;
  deviceId: string;
  memoryMb: number;
  exclusive: boolean;
}

/**
 * The head's reservation: the earliest time its request fits once running tasks are gone by
 * their deadlines (a holder without one never leaves), and the devices it would take then, with
 * what each could still spare at that time. Null when it fits at no time (blocked devices, or a
 * holder that never ends, stand in the way).
 */
function reserve(
  caps: readonly Cap[],
  releases: readonly Release[],
  head: QueuedTaskView,
  now: number,
): { reservation: Reservation; spare: Map<string, number> } | null {
  // Replay releases in time order on a copy of the capacities; check the head after each instant.
  const sim = new Map(caps.map((c) => [c.view.id, { ...c }]));
  const byTime = [...releases].sort((a, b) => a.at - b.at);
  let i = 0;
  while (i < byTime.length) {
    const at = Math.max(now, byTime[i]!.at);
    while (i < byTime.length && Math.max(now, byTime[i]!.at) === at) {
      const r = byTime[i++]!;
      const c = sim.get(r.deviceId);
      if (!c) continue;
      c.holders--;
      if (r.exclusive) {
        c.exclusive--;
        c.wholeFree = c.view.memoryMb - c.view.externalMemoryMb;
      } else {
        c.sharedFree += r.memoryMb;
        c.wholeFree += r.memoryMb;
      }
    }
    const chosen = pick([...sim.values()], head.request, () => true);
    if (chosen) {
      const spare = new Map<string, number>();
      for (const c of chosen) spare.set(c.view.id, isShared(head.request) ? c.sharedFree - head.request.memoryMb! : -1);
      return { reservation: { taskId: head.taskId, startAt: at, deviceIds: chosen.map((c) => c.view.id) }, spare };
    }
  }
  return null;
}

function place(input: SchedulingInput, backfill: boolean, policy: string): SchedulingDecision {
  const reserveFraction = input.reserveFraction ?? DEFAULT_MEMORY_RESERVE;
  const caps = capacities(input.devices, reserveFraction);
  const capById = new Map(caps.map((c) => [c.view.id, c]));
  const grace = input.releaseGraceMs ?? 0;
  const releases: Release[] = [];
  for (const d of input.devices)
    for (const h of d.holders)
      if (h.endsBy !== null) releases.push({ at: h.endsBy + grace, deviceId: d.id, memoryMb: h.memoryMb, exclusive: h.exclusive });

  const assignments: Placement[] = [];
  const preemptions: Preemption[] = [];
  // Why each queued task waits, by its place in the queue: one array slot a task (a shared
  // reason object per shape), turned into a map only if someone reads it.
  const reasons: (WaitReason | undefined)[] = new Array(input.queue.length);
  let reservation: Reservation | null = null;
  let spare = new Map<string, number>();
  let headId: string | null = null;
  // Shapes that found no room in this pass: capacity only shrinks as the pass goes on, so the
  // same shape fails again (this keeps a long queue of look-alike tasks cheap).
  const failed = new Map<number, WaitReason>();
  let ahead = 0;

  const order = new AdmissionOrder(input.queue, input.devices, input.accounts);
  const quotaReasons = new Map<string, WaitReason>();

  const grounds = (chosen: readonly Cap[], backfilled: boolean, t: QueuedTaskView): PlacementGrounds => ({
    policy,
    ahead,
    backfilled,
    priority: t.priority ?? 0,
    share: order.share(t.owner ?? ''),
    reservation,
    reserveFraction,
    devices: chosen.map((c) => ({
      deviceId: c.view.id,
      memoryMb: c.view.memoryMb,
      externalMemoryMb: c.view.externalMemoryMb,
      heldMb: c.view.memoryMb - c.view.externalMemoryMb - c.wholeFree,
      holders: c.holders,
    })),
  });

  // Per request shape (a number: cheap to build and to look up for every queued task): whether
  // it can ever fit this host, and the reason it waits once it found no room in this pass.
  const never = new Map<number, WaitReason | null>();
  let behindHead: WaitReason | null = null;
  for (let next = order.next(); next !== null; next = order.next()) {
    const qi = next;
    const t = input.queue[qi]!;
    const r = t.request;
    const shape = shapeKey(r);
    let cannot = never.get(shape);
    if (cannot === undefined)
      never.set(shape, (cannot = requestFits(input.devices, r, reserveFraction) ? null : neverFits(r, input.devices)));
    if (cannot) {
      reasons[qi] = cannot;
      ahead++;
      continue;
    }
    // Over quota: waits, and holds nobody up (it is not the head).
    const over = order.overQuota(t);
    if (over) {
      let reason = quotaReasons.get(over);
      if (!reason) quotaReasons.set(over, (reason = { code: 'QUOTA', message: over, reservedStart: null }));
      reasons[qi] = reason;
      ahead++;
      continue;
    }
    if (headId === null) {
      const chosen = pick(caps, r, () => true);
      if (chosen) {
        const g = grounds(chosen, false, t);
        assignments.push({ taskId: t.taskId, devices: chosen.map((c) => take(c, r)), grounds: g });
        order.placed(t);
        for (const c of chosen)
          releases.push({ at: input.now + t.timeoutMs + grace, deviceId: c.view.id, memoryMb: grantMemory(c, r), exclusive: !isShared(r) });
        continue;
      }
      // The head is blocked: it waits with a reservation when it can have one, and, with
      // preemption, running tasks of a lower priority are stopped to make room for it.
      headId = t.taskId;
      const mode = preemptionMode(input.preemption);
      if (mode !== 'off' && preemptions.length === 0)
        preemptions.push(...choosePreemptions(caps, input.devices, t, mode, fairShares(input, caps, order)));
      const res = reserve(caps, releases, t, input.now);
      reservation = res?.reservation ?? null;
      spare = res?.spare ?? new Map();
      reasons[qi] = headReason(t, caps, reservation);
      ahead++;
      if (!reservation) headId = null; // nothing to protect: the ones behind go on as if it were not there
      continue;
    }
    if (!backfill) {
      behindHead ??= {
        code: 'BEHIND_HEAD',
        message: `Waits behind task ${headId}, first in the queue (strict FIFO).`,
        reservedStart: null,
      };
      reasons[qi] = behindHead;
      ahead++;
      continue;
    }
    const endsBy = input.now + t.timeoutMs + grace;
    const endsInTime = reservation !== null && endsBy <= reservation.startAt;
    const key = shape * 2 + (endsInTime ? 1 : 0);
    const known = failed.get(key);
    if (known) {
      reasons[qi] = known;
      ahead++;
      continue;
    }
    // Never delays the head: a device the head is reserved may be used only by a task that ends
    // before the reserved start, or by a shared task that leaves the head's share free then.
    const harmless = (c: Cap) => {
      if (!reservation || endsInTime || !spare.has(c.view.id)) return true;
      return isShared(r) && spare.get(c.view.id)! >= r.memoryMb!;
    };
    const chosen = pick(caps, r, harmless);
    if (chosen) {
      const g = grounds(chosen, true, t);
      assignments.push({ taskId: t.taskId, devices: chosen.map((c) => take(c, r)), grounds: g });
      order.placed(t);
      for (const c of chosen) {
        releases.push({ at: endsBy, deviceId: c.view.id, memoryMb: grantMemory(c, r), exclusive: !isShared(r) });
        if (spare.has(c.view.id) && reservation && !endsInTime) spare.set(c.view.id, spare.get(c.view.id)! - r.memoryMb!);
      }
      continue;
    }
    const reason = pick(caps, r, () => true)
      ? reservedReason(reservation!, capById)
      : ({ code: 'WAITING_FOR_DEVICES', message: shortage(r, caps), reservedStart: null } satisfies WaitReason);
    failed.set(key, reason);
    reasons[qi] = reason;
    ahead++;
  }
  return lazyDecision(assignments, reservation, preemptions, input.queue, reasons);
}

function lazyDecision(
  assignments: Placement[],
  reservation: Reservation | null,
  preemptions: Preemption[],
  queue: readonly QueuedTaskView[],
  reasons: readonly (WaitReason | undefined)[],
): SchedulingDecision {
  let waiting: Map<string, WaitReason> | null = null;
  return {
    assignments,
    reservation,
    preemptions,
    get waiting() {
      if (!waiting) {
        waiting = new Map();
        for (let i = 0; i < queue.length; i++) if (reasons[i]) waiting.set(queue[i]!.taskId, reasons[i]!);
      }
      return waiting;
    },
  };
}

/**
 * The order tasks are considered in: priority (higher first), then, among equal priority, the
 * user furthest below their fair share (decayed past use plus running devices, per weight;
 * recomputed as this pass places tasks), then queue position. Each user's own tasks keep FIFO.
 * With one user and one priority it is the queue's order, at no cost.
 */
class AdmissionOrder {
  private readonly simple: boolean;
  private i = 0;
  /** By priority (highest first): each user's queue indices in FIFO order. */
  private readonly levels: { users: Map<string, number[]>; heads: Map<string, number> }[] = [];
  private level = 0;
  private readonly running = new Map<string, number>();

  constructor(
    private readonly queue: readonly QueuedTaskView[],
    devices: readonly DeviceView[],
    private readonly accounts: ReadonlyMap<string, Account> | undefined,
  ) {
    for (const d of devices)
      for (const h of d.holders) if (h.owner !== undefined) this.running.set(h.owner, (this.running.get(h.owner) ?? 0) + 1);
    const owners = new Set<string>();
    const priorities = new Set<number>();
    for (const t of queue) {
      owners.add(t.owner ?? '');
      priorities.add(t.priority ?? 0);
    }
    this.simple = owners.size <= 1 && priorities.size <= 1;
    if (this.simple) return;
    const byPriority = new Map<number, Map<string, number[]>>();
    queue.forEach((t, i) => {
      const p = t.priority ?? 0;
      const users = byPriority.get(p) ?? new Map<string, number[]>();
      byPriority.set(p, users);
      const list = users.get(t.owner ?? '') ?? [];
      users.set(t.owner ?? '', list);
      list.push(i);
    });
    for (const p of [...byPriority.keys()].sort((a, b) => b - a)) this.levels.push({ users: byPriority.get(p)!, heads: new Map() });
  }

  /** The next queue index to consider, or null when every task has been. */
  next(): number | null {
    if (this.simple) return this.i < this.queue.length ? this.i++ : null;
    while (this.level < this.levels.length) {
      const { users, heads } = this.levels[this.level]!;
      let best: string | null = null;
      let bestShare = Infinity;
      for (const [user, list] of users) {
        if ((heads.get(user) ?? 0) >= list.length) continue;
        const s = this.share(user);
        // Ties go to the user whose next task queued first.
        if (s < bestShare || (s === bestShare && list[heads.get(user) ?? 0]! < users.get(best!)![heads.get(best!) ?? 0]!)) {
          best = user;
          bestShare = s;
        }
      }
      if (best === null) {
        this.level++;
        continue;
      }
      const at = heads.get(best) ?? 0;
      heads.set(best, at + 1);
      return users.get(best)![at]!;
    }
    return null;
  }

  /** A user's fair-share standing: use per weight, running devices counted over the horizon. */
  share(user: string): number {
    const a = this.accounts?.get(user);
    return ((a?.usageGpuSeconds ?? 0) + (this.running.get(user) ?? 0) * FAIR_SHARE_HORIZON_S) / (a?.weight || 1);
  }

  placed(t: QueuedTaskView): void {
    const user = t.owner ?? '';
    this.running.set(user, (this.running.get(user) ?? 0) + t.request.gpus);
  }

  /** Why the task is over its owner's quota (one sentence), or null. */
  overQuota(t: QueuedTaskView): string | null {
    const user = t.owner ?? '';
    const a = this.accounts?.get(user);
    if (!a) return null;
    const running = this.running.get(user) ?? 0;
    if (a.maxGpus !== null && running + t.request.gpus > a.maxGpus)
      return `${user} may use ${a.maxGpus} GPU(s) at once and uses ${running}; this task (${t.request.gpus}) waits until some of theirs end.`;
    if (a.gpuHoursCap !== null && a.gpuHoursUsed >= a.gpuHoursCap)
      return `${user} has used ${Math.round(a.gpuHoursUsed * 10) / 10} of ${a.gpuHoursCap} GPU-hours in the quota window; this task waits until older use leaves the window.`;
    return null;
  }
}

function preemptionMode(p: SchedulingInput['preemption']): PreemptionMode {
  return p === true ? 'priority' : p === false || p === undefined ? 'off' : p;
}

/** Each user with work: weight, devices held, fair share of the pool, standing. */
function fairShares(input: SchedulingInput, caps: readonly Cap[], order: AdmissionOrder): Map<string, PreemptionUser> & { pool: number } {
  const users = new Map<string, PreemptionUser>() as Map<string, PreemptionUser> & { pool: number };
  const add = (user: string) => {
    let u = users.get(user);
    if (!u) users.set(user, (u = { user, weight: input.accounts?.get(user)?.weight || 1, held: 0, fairShare: 0, standing: 0 }));
    return u;
  };
  for (const d of input.devices) for (const h of d.holders) if (!h.stopping) add(h.owner ?? '').held++;
  for (const t of input.queue) add(t.owner ?? '');
  users.pool = caps.filter((c) => !c.blocked).length;
  const weights = [...users.values()].reduce((n, u) => n + u.weight, 0);
  for (const u of users.values()) {
    u.fairShare = weights > 0 ? (users.pool * u.weight) / weights : 0;
    u.standing = order.share(u.user);
  }
  return users;
}

/**
 * The fewest running tasks whose devices, freed, let `head` start: those of a lower priority
 * and, with `fair-share`, those of its priority whose owners hold more than their fair share
 * while the head's owner holds less (never taking an owner below their share, nor putting the
 * head's owner above theirs). Lowest priority first, then most recently started; never one
 * that was preempted too often; and none at all when tasks already stopping will free enough.
 */
function choosePreemptions(
  caps: readonly Cap[],
  devices: readonly DeviceView[],
  head: QueuedTaskView,
  mode: Exclude<PreemptionMode, 'off'>,
  users: Map<string, PreemptionUser> & { pool: number },
): Preemption[] {
  const headPriority = head.priority ?? 0;
  const headOwner = head.owner ?? '';
  type Running = { priority: number; startedAt: number | null; preemptible: boolean; stopping: boolean; owner: string; gpus: number };
  const tasks = new Map<string, Running>();
  for (const d of devices)
    for (const h of d.holders) {
      const known = tasks.get(h.taskId);
      if (known) known.gpus++;
      else
        tasks.set(h.taskId, {
          priority: h.priority ?? 0,
          startedAt: h.startedAt ?? null,
          preemptible: h.preemptible ?? true,
          stopping: h.stopping ?? false,
          owner: h.owner ?? '',
          gpus: 1,
        });
    }
  const stopping = [...tasks].filter(([, t]) => t.stopping).map(([id]) => id);
  const headUser = users.get(headOwner);
  // Fair share: the head's owner, with the head started, holds no more than their share.
  const headUnder = mode === 'fair-share' && headUser !== undefined && headUser.held + head.request.gpus <= headUser.fairShare;
  const byPriority = (t: Running) => t.priority < headPriority;
  const byShare = (t: Running) => headUnder && t.priority === headPriority && t.owner !== headOwner && users.has(t.owner);
  const candidates = [...tasks]
    .filter(([, t]) => !t.stopping && t.preemptible && (byPriority(t) || byShare(t)))
    .sort(([, a], [, b]) => a.priority - b.priority || (b.startedAt ?? 0) - (a.startedAt ?? 0));
  if (!candidates.length) return [];
  const fitsWithout = (gone: readonly string[]) => {
    const set = new Set(gone);
    const freed = caps.map((c) => {
      const copy = { ...c };
      for (const h of c.view.holders) {
        if (!set.has(h.taskId)) continue;
        copy.holders--;
        if (h.exclusive) {
          copy.exclusive--;
          copy.wholeFree = c.view.memoryMb - c.view.externalMemoryMb;
        } else {
          copy.sharedFree += h.memoryMb;
          copy.wholeFree += h.memoryMb;
        }
      }
      return copy;
    });
    return pick(freed, head.request, () => true) !== null;
  };
  if (fitsWithout(stopping)) return [];
  const victims: string[] = [];
  // Devices each owner gives up to this decision: a fair-share victim only while its owner keeps their share.
  const givenUp = new Map<string, number>();
  for (const [id, t] of candidates) {
    if (!byPriority(t)) {
      const u = users.get(t.owner)!;
      if (u.held - (givenUp.get(t.owner) ?? 0) - t.gpus < u.fairShare) continue;
    }
    victims.push(id);
    givenUp.set(t.owner, (givenUp.get(t.owner) ?? 0) + t.gpus);
    if (fitsWithout([...stopping, ...victims])) break;
  }
  if (!fitsWithout([...stopping, ...victims])) return [];
  // Never more than needed: drop any victim the head can do without.
  for (let i = victims.length - 1; i >= 0; i--) {
    const without = victims.filter((_, k) => k !== i);
    if (fitsWithout([...stopping, ...without])) victims.splice(i, 1);
  }
  const involved = [...users.values()].sort((a, b) => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0));
  const round = (n: number) => Math.round(n * 1000) / 1000;
  const snapshot = involved.map((u) => ({ ...u, fairShare: round(u.fairShare), standing: round(u.standing) }));
  return victims.map((taskId) => {
    const t = tasks.get(taskId)!;
    const rule = byPriority(t) ? 'priority' : 'fair-share';
    const who = (name: string) => (name === '' ? 'the local user' : name);
    const message =
      rule === 'priority'
        ? `preempted for task ${head.taskId} (priority ${headPriority}): it goes back to the queue and resumes from its last checkpoint`
        : `preempted for task ${head.taskId} by fair share: ${who(headOwner)} holds ${headUser!.held} of ${users.pool} devices ` +
          `(fair share ${round(headUser!.fairShare)}), ${who(t.owner)} holds ${users.get(t.owner)!.held} ` +
          `(fair share ${round(users.get(t.owner)!.fairShare)}); it goes back to the queue and resumes from its last checkpoint`;
    return {
      taskId,
      forTaskId: head.taskId,
      message,
      grounds: {
        rule,
        head: { taskId: head.taskId, owner: headOwner, priority: headPriority, gpus: head.request.gpus },
        victim: { taskId, owner: t.owner, priority: t.priority, startedAt: t.startedAt, gpus: t.gpus },
        pool: users.pool,
        users: snapshot,
        victims: [...victims],
      },
    } satisfies Preemption;
  });
}

/** A request's shape as one number: GPUs, memory (0 = none given) and sharing. */
function shapeKey(r: ResourceRequest): number {
  return (r.gpus * 8_388_608 + (r.memoryMb === null ? 0 : r.memoryMb + 1)) * 2 + (isShared(r) ? 1 : 0);
}

function grantMemory(c: Cap, r: ResourceRequest): number {
  return isShared(r) ? r.memoryMb! : c.view.memoryMb;
}

const at = (ms: number) => `${new Date(ms).toISOString().slice(11, 16)} UTC`;

function describeRequest(r: ResourceRequest): string {
  const n = r.gpus === 1 ? '1 GPU' : `${r.gpus} GPUs`;
  const mem = r.memoryMb !== null ? ` with ${gb(r.memoryMb)} GB each` : '';
  return `${n}${mem}${isShared(r) ? ' (shared)' : ''}`;
}

function shortage(r: ResourceRequest, caps: readonly Cap[]): string {
  const free = caps.filter((c) => fitsOn(c, r)).length;
  return `Needs ${describeRequest(r)}, ${free} free.`;
}

function headReason(t: QueuedTaskView, caps: readonly Cap[], reservation: Reservation | null): WaitReason {
  const r = t.request;
  const blocked = caps.filter((c) => c.blocked);
  if (!reservation && blocked.length)
    return {
      code: 'EXTERNAL_MEMORY',
      message: `Needs ${describeRequest(r)}; ${blocked.map((c) => `${deviceLabel(c.view)} is held by another program`).join(', ')}. ${blocked[0]!.view.blockedReason}`,
      reservedStart: null,
    };
  return {
    code: 'WAITING_FOR_DEVICES',
    message: `${shortage(r, caps)}${reservation ? ` First in the queue: reserved ${reservation.deviceIds.join(', ')} from ${at(reservation.startAt)} at the latest.` : ''}`,
    reservedStart: reservation?.startAt ?? null,
  };
}

function reservedReason(reservation: Reservation, capById: Map<string, Cap>): WaitReason {
  const devices = reservation.deviceIds.map((id) => (capById.get(id) ? deviceLabel(capById.get(id)!.view) : id));
  return {
    code: 'RESERVED_FOR_HEAD',
    message:
      `${devices.join(', ')} ${devices.length === 1 ? 'is' : 'are'} reserved for task ${reservation.taskId} from ${at(reservation.startAt)}; ` +
      'this task could still be running then (its timeout ends later), so it waits rather than delay that task.',
    reservedStart: null,
  };
}

function neverFits(r: ResourceRequest, devices: readonly DeviceView[]): WaitReason {
  const whole = devices.filter((d) => d.migProfile === null).length;
  const largest = devices.reduce((m, d) => Math.max(m, d.memoryMb), 0);
  return {
    code: 'NEVER_FITS',
    message:
      `Needs ${describeRequest(r)}, but this host has ${devices.length} device(s) (${whole} whole GPU(s), largest ${gb(largest)} GB). ` +
      'Cancel it and submit with fewer GPUs or less memory, or add devices.',
    reservedStart: null,
  };
}

/** Order queued tasks by their FIFO key; tasks not yet queued come last, in the given order. */
export function fifoOrder<T extends Pick<QueuedTaskView, 'queuedPosition'>>(tasks: readonly T[]): T[] {
  return tasks
    .map((t, i) => ({ t, i }))
    .sort((a, b) => {
      const pa = a.t.queuedPosition,
        pb = b.t.queuedPosition;
      if (pa === null && pb === null) return a.i - b.i;
      if (pa === null) return 1;
      if (pb === null) return -1;
      const d = BigInt(pa) - BigInt(pb);
      return d < 0n ? -1 : d > 0n ? 1 : 0;
    })
    .map(({ t }) => t);
}
