// What-if replay: a job trace (or a recorded log's submissions) run through the real scheduling
// policy in virtual time, on a pool of identical GPUs. Event-driven: the clock jumps from one
// arrival or completion to the next, and at each such instant the policy is asked what starts,
// with the holders as they are then (each gone by its deadline: start + timeout) and the queue
// in FIFO order. A job runs for its real duration, which the policy never sees: like a real
// scheduler it knows only the timeout. The replay checks every placement against its own state
// (devices free, memory within bounds, the job queued), so a policy that double-books fails loudly.
import {
  requestFits,
  type Device,
  type DeviceHolder,
  type DeviceView,
  type QueuedTaskView,
  type ResourceRequest,
  type SchedulingPolicy,
} from '@trainyard/domain';

/** One job to replay. Times are virtual milliseconds (the trace's own origin). */
export interface ReplayJob {
  id: string;
  submitMs: number;
  /** How long it really runs once started (hidden from the policy). */
  durationMs: number;
  /** What the policy is told bounds its run time. */
  timeoutMs: number;
  request: ResourceRequest;
}

/** How one job went. */
export interface JobRun {
  id: string;
  submitMs: number;
  startMs: number;
  endMs: number;
  deviceIds: string[];
  /** Started ahead of a blocked head (the policy's own account of the placement). */
  backfilled: boolean;
}

export interface ReplayMetrics {
  /** Busy GPU-seconds / (GPUs × makespan); a GPU is busy while any job holds it. */
  utilisation: number;
  waitMeanS: number;
  waitP50S: number;
  waitP99S: number;
  waitMaxS: number;
  /** First submission to last completion, seconds. */
  makespanS: number;
  busyGpuSeconds: number;
}

export interface ReplayResult {
  policy: string;
  gpus: number;
  /** Jobs replayed (skipped ones not counted). */
  jobs: number;
  /** Jobs no device set of this pool can ever hold (e.g. more GPUs than the pool): left out and counted. */
  skipped: ReplayJob[];
  runs: JobRun[];
  metrics: ReplayMetrics;
  /** How often the policy was asked. */
  policyCalls: number;
  backfilled: number;
}

export interface PoolOptions {
  gpus: number;
  /** Memory of each GPU (matters only for requests with a memory figure); default 80 GB. */
  gpuMemoryMb?: number;
}

export const DEFAULT_GPU_MEMORY_MB = 80 * 1024;

/** A placement the replay cannot carry out: the policy broke a rule of the model. */
export class ReplayError extends Error {
  override name = 'ReplayError';
}

/** The pool: N identical whole GPUs. */
export function identicalGpus({ gpus, gpuMemoryMb = DEFAULT_GPU_MEMORY_MB }: PoolOptions): Device[] {
  if (!Number.isInteger(gpus) || gpus < 1) throw new RangeError(`gpus: expected a whole number ≥ 1, got ${gpus}`);
  return Array.from({ length: gpus }, (_, i) => ({
    id: `gpu${i}`,
    gpuIndex: i,
    uuid: null,
    name: 'GPU',
    memoryMb: gpuMemoryMb,
    migProfile: null,
  }));
}

export function replay(jobsIn: readonly ReplayJob[], policy: SchedulingPolicy, pool: PoolOptions): ReplayResult {
  const devices = identicalGpus(pool);
  const n = devices.length;
  const indexOf = new Map(devices.map((d, i) => [d.id, i]));
  const skipped: ReplayJob[] = [];
  const jobs: ReplayJob[] = [];
  for (const j of jobsIn) (requestFits(devices, j.request) ? jobs : skipped).push(j);
  // Arrival order; a stable sort keeps the input's order between equal submission times.
  const arrivals = jobs.map((j, i) => ({ j, i })).sort((a, b) => a.j.submitMs - b.j.submitMs || a.i - b.i);
  const jobById = new Map(jobs.map((j) => [j.id, j]));
  if (jobById.size !== jobs.length) throw new ReplayError('job ids must be unique');

  const holders: DeviceHolder[][] = devices.map(() => []);
  const views: DeviceView[] = devices.map((d) => ({ ...d, externalMemoryMb: 0, blockedReason: null, holders: [] }));
  const busySince: number[] = devices.map(() => -1);
  let busyMs = 0;
  let queue: QueuedTaskView[] = [];
  const running = new Map<string, { run: JobRun; grants: { device: number; memoryMb: number; exclusive: boolean }[] }>();
  const completions = new MinHeap<{ at: number; id: string }>((a, b) => a.at - b.at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const runs: JobRun[] = [];
  let next = 0;
  let seq = 0;
  let policyCalls = 0;

  const setHolders = (d: number, list: DeviceHolder[], now: number) => {
    const was = holders[d]!.length;
    holders[d] = list;
    views[d] = { ...views[d]!, holders: list };
    if (was === 0 && list.length > 0) busySince[d] = now;
    if (was > 0 && list.length === 0) {
      busyMs += now - busySince[d]!;
      busySince[d] = -1;
    }
  };

  while (next < arrivals.length || completions.size > 0) {
    const now = Math.min(arrivals[next]?.j.submitMs ?? Infinity, completions.peek()?.at ?? Infinity);
    while (completions.size > 0 && completions.peek()!.at <= now) {
      const { id } = completions.pop()!;
      const r = running.get(id)!;
      running.delete(id);
      for (const g of r.grants)
        setHolders(
          g.device,
          holders[g.device]!.filter((h) => h.taskId !== id),
          now,
        );
    }
    while (next < arrivals.length && arrivals[next]!.j.submitMs <= now) {
      const j = arrivals[next++]!.j;
      queue.push({ taskId: j.id, queuedPosition: String(seq++), request: j.request, timeoutMs: j.timeoutMs });
    }
    if (queue.length === 0) continue;
    policyCalls++;
    const decision = policy.schedule({ devices: views, queue, now });
    if (decision.assignments.length === 0) {
      if (running.size === 0 && next >= arrivals.length)
        throw new ReplayError(
          `stalled at ${now} ms: ${queue.length} job(s) queued, none running, none to come, and the policy starts none`,
        );
      continue;
    }
    const queued = new Set(queue.map((q) => q.taskId));
    const started = new Set<string>();
    for (const a of decision.assignments) {
      const j = jobById.get(a.taskId);
      if (!j || !queued.has(a.taskId) || started.has(a.taskId))
        throw new ReplayError(`${policy.name} started ${a.taskId}, which is not queued`);
      const ids = a.devices.map((g) => g.deviceId);
      if (ids.length !== j.request.gpus || new Set(ids).size !== ids.length)
        throw new ReplayError(`${policy.name} gave ${a.taskId} devices [${ids.join(', ')}] for a request of ${j.request.gpus} GPU(s)`);
      const grants = a.devices.map((g) => {
        const d = indexOf.get(g.deviceId);
        if (d === undefined) throw new ReplayError(`${policy.name} placed ${a.taskId} on ${g.deviceId}, which is not in the pool`);
        const on = holders[d]!;
        const memory = on.reduce((m, h) => m + h.memoryMb, 0) + g.memoryMb;
        if (on.some((h) => h.exclusive) || (g.exclusive && on.length > 0) || memory > devices[d]!.memoryMb)
          throw new ReplayError(`${policy.name} placed ${a.taskId} on ${g.deviceId}, held by ${on.map((h) => h.taskId).join(', ')}`);
        return { device: d, memoryMb: g.memoryMb, exclusive: g.exclusive };
      });
      started.add(a.taskId);
      const run: JobRun = {
        id: j.id,
        submitMs: j.submitMs,
        startMs: now,
        endMs: now + j.durationMs,
        deviceIds: ids,
        backfilled: a.grounds.backfilled,
      };
      for (const g of grants)
        setHolders(
          g.device,
          [...holders[g.device]!, { taskId: j.id, memoryMb: g.memoryMb, exclusive: g.exclusive, endsBy: now + j.timeoutMs }],
          now,
        );
      running.set(j.id, { run, grants });
      runs.push(run);
      completions.push({ at: run.endMs, id: j.id });
    }
    queue = queue.filter((q) => !started.has(q.taskId));
  }

  return {
    policy: policy.name,
    gpus: n,
    jobs: jobs.length,
    skipped,
    runs,
    metrics: metrics(runs, n, busyMs),
    policyCalls,
    backfilled: runs.filter((r) => r.backfilled).length,
  };
}

function metrics(runs: readonly JobRun[], gpus: number, busyMs: number): ReplayMetrics {
  if (runs.length === 0) return { utilisation: 0, waitMeanS: 0, waitP50S: 0, waitP99S: 0, waitMaxS: 0, makespanS: 0, busyGpuSeconds: 0 };
  const waits = runs.map((r) => (r.startMs - r.submitMs) / 1000).sort((a, b) => a - b);
  const first = runs.reduce((m, r) => Math.min(m, r.submitMs), Infinity);
  const last = runs.reduce((m, r) => Math.max(m, r.endMs), -Infinity);
  const makespanMs = last - first;
  return {
    utilisation: makespanMs > 0 ? busyMs / (gpus * makespanMs) : 0,
    waitMeanS: waits.reduce((a, b) => a + b, 0) / waits.length,
    waitP50S: percentile(waits, 50),
    waitP99S: percentile(waits, 99),
    waitMaxS: waits[waits.length - 1]!,
    makespanS: makespanMs / 1000,
    busyGpuSeconds: busyMs / 1000,
  };
}

/** Percentile of sorted samples by linear interpolation between closest ranks (p in 0..100), as the bench's summaries. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

/** A binary min-heap (completions by time). */
class MinHeap<T> {
  private readonly items: T[] = [];
  constructor(private readonly less: (a: T, b: T) => number) {}
  get size(): number {
    return this.items.length;
  }
  peek(): T | undefined {
    return this.items[0];
  }
  push(x: T): void {
    const a = this.items;
    a.push(x);
    for (let i = a.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (this.less(a[i]!, a[p]!) >= 0) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): T | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l]!, a[m]!) < 0) m = l;
        if (r < a.length && this.less(a[r]!, a[m]!) < 0) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}
