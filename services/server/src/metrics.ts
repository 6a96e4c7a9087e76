// Prometheus metrics (prom-client). State gauges are read from the read models at scrape
// time; wait and run durations are observed as the feed sees tasks start and end.
// Operators' view (issue 19): per device the memory promised to tasks, the memory in use as the
// probe last saw it, the holders and the idle time between tasks; per queue reason the waiting
// tasks and how long they have waited; whether the database answers. infra/prometheus/alerts.yml
// and infra/grafana/trainyard.json use only these (metrics-infra.int.spec.ts checks it).
import client from 'prom-client';
import { TASK_STATUSES, WAIT_CODES, type StoredTaskEvent, type TaskRecord } from '@trainyard/domain';
import { countByStatus, countQueued, listDevicesWithHolders } from '@trainyard/store';
import { answerWithin } from './answer-within';
import { log } from './log';
import type { TrainyardService } from './service';

/** The events `observe` needs (main.ts loads their tasks): starts, ends and preemptions. */
export const METRIC_EVENTS: ReadonlySet<string> = new Set([
  'TaskAssigned',
  'TaskPreempted',
  'TaskCompleted',
  'TaskFailed',
  'TaskCancelled',
]);

/** Queued tasks classified by reason at a scrape; the rest count as UNCLASSIFIED. */
const QUEUE_SCRAPE_LIMIT = 2000;
/** A scrape's collectors share one read of the queue and devices made within this long. */
const SNAPSHOT_MS = 500;
const MB = 1024 * 1024;
const GB = 1024 * MB;
const WAIT_BUCKETS = [0.01, 0.1, 1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600];

type QueueView = Awaited<ReturnType<TrainyardService['queue']>>;
interface Snapshot {
  at: number;
  queue: QueueView | null;
}

export class Metrics {
  readonly registry = new client.Registry();
  private readonly wait: client.Histogram;
  private readonly run: client.Histogram;
  private readonly idleGap: client.Histogram;
  /** Per device: the tasks this process saw assigned to it and not yet released. */
  private readonly holdersSeen = new Map<string, Set<string>>();
  /** Per task: the devices it was assigned. */
  private readonly devicesOf = new Map<string, string[]>();
  /** Per device: since when (epoch ms) it has held nothing, as far as this process knows. */
  private readonly idleSince = new Map<string, number>();
  private snapshot: Promise<Snapshot> | null = null;

  constructor(private readonly service: TrainyardService) {
    const db = service.database.db;
    const read = () => this.read();
    const deviceGauge = (name: string, help: string, value: (d: QueueView['devices'][number], now: number) => number | null) =>
      new client.Gauge({
        name,
        help,
        labelNames: ['device', 'gpu'],
        registers: [this.registry],
        async collect() {
          this.reset();
          const { queue, at } = await read();
          for (const d of queue?.devices ?? []) {
            const v = value(d, at);
            if (v !== null) this.set({ device: d.id, gpu: String(d.gpuIndex) }, v);
          }
        },
      });
    client.collectDefaultMetrics({ register: this.registry, prefix: 'trainyard_process_' });
    new client.Gauge({
      name: 'trainyard_tasks',
      help: 'Tasks by lifecycle state (deleted tasks included)',
      labelNames: ['status'],
      registers: [this.registry],
      async collect() {
        // A database that does not answer leaves these out (trainyard_database_up says why), not the scrape.
        const counts = await answerWithin(countByStatus(db)).catch(() => null);
        this.reset();
        if (counts) for (const s of TASK_STATUSES) this.set({ status: s }, counts[s] ?? 0);
      },
    });
    new client.Gauge({
      name: 'trainyard_queue_length',
      help: 'Tasks waiting in the queue',
      registers: [this.registry],
      async collect() {
        const n = await answerWithin(countQueued(db)).catch(() => null);
        // A gauge without labels cannot be left out (reset() puts it at 0, an empty queue): NaN
        // says there is no figure, and compares false in any alert.
        this.set(n ?? NaN);
      },
    });
    new client.Gauge({
      name: 'trainyard_gpu_devices',
      help: 'Schedulable devices (GPUs and MIG instances) by occupancy',
      labelNames: ['state'],
      registers: [this.registry],
      async collect() {
        const devices = await answerWithin(listDevicesWithHolders(db)).catch(() => null);
        this.reset();
        if (!devices) return;
        const busy = devices.filter((d) => d.holders.length).length;
        this.set({ state: 'busy' }, busy);
        this.set({ state: 'free' }, devices.length - busy);
      },
    });
    // Live subscriptions: how many, and what they cost the database. Idle subscribers cost
    // nothing: the feed reads each change once and the fan-out loads its tasks once.
    const live = service.live;
    new client.Gauge({
      name: 'trainyard_subscriptions',
      help: 'Open live subscriptions by procedure',
      labelNames: ['procedure'],
      registers: [this.registry],
      collect() {
        const open = live.stats().subscriptions;
        for (const [procedure, n] of Object.entries(open)) this.set({ procedure }, n);
      },
    });
    const counter = (name: string, help: string, value: () => number) =>
      new client.Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.reset();
          this.inc(value());
        },
      });
    counter('trainyard_feed_reads_total', 'Reads of the event log by the feed (one tail for every subscriber)', () => service.feed.reads);
    counter('trainyard_feed_batches_total', 'Batches of events the feed delivered', () => service.feed.batches);
    counter(
      'trainyard_subscription_fan_out_loads_total',
      'Task loads by the subscription fan-out (one per watched feed batch)',
      () => live.stats().fanOutLoads,
    );
    counter(
      'trainyard_subscription_catch_up_reads_total',
      'Reads of the event log by subscriptions resuming from an older position',
      () => live.stats().catchUpReads,
    );
    counter(
      'trainyard_subscription_log_reads_total',
      'Reads of log lines for live log subscriptions (per task, and while catching up)',
      () => live.stats().logReads,
    );
    counter(
      'trainyard_subscriptions_refused_total',
      'Subscriptions refused over the total or per-client limit',
      () => live.stats().refused,
    );
    counter(
      'trainyard_subscriptions_ended_behind_total',
      'Subscriptions ended because they fell too far behind',
      () => live.stats().endedBehind,
    );
    new client.Counter({
      name: 'trainyard_log_lines_dropped_total',
      help: 'Service log lines not written because their stream (stdout, stderr) failed, e.g. a pipe whose reader went away',
      labelNames: ['stream'],
      registers: [this.registry],
      collect() {
        this.reset();
        const dropped = log.dropped();
        this.inc({ stream: 'stdout' }, dropped.stdout);
        this.inc({ stream: 'stderr' }, dropped.stderr);
      },
    });
    this.wait = new client.Histogram({
      name: 'trainyard_task_wait_seconds',
      help: 'Time from submission to getting a GPU slot',
      buckets: WAIT_BUCKETS,
      registers: [this.registry],
    });
    new client.Gauge({
      name: 'trainyard_database_up',
      help: '1 when the database answered the last scrape, 0 when it did not',
      registers: [this.registry],
      async collect() {
        this.set((await read()).queue ? 1 : 0);
      },
    });
    deviceGauge('trainyard_gpu_memory_bytes', 'Memory of each schedulable device', (d) => d.memoryGb * GB);
    deviceGauge('trainyard_gpu_memory_promised_bytes', "Memory promised to the tasks holding each device (the scheduler's books)", (d) =>
      Math.round(d.holders.reduce((a, h) => a + h.memoryGb, 0) * GB),
    );
    deviceGauge(
      'trainyard_gpu_memory_external_bytes',
      'Memory held on each device by processes that are not our tasks',
      (d) => d.externalMemoryGb * GB,
    );
    deviceGauge('trainyard_gpu_holders', 'Tasks holding each device', (d) => d.holders.length);
    deviceGauge('trainyard_gpu_idle_seconds', 'Seconds each device has held no task (0 while held)', (d, now) => {
      if (d.holders.length) return 0;
      let since = this.idleSince.get(d.id);
      if (since === undefined) this.idleSince.set(d.id, (since = now));
      return Math.max(0, (now - since) / 1000);
    });
    // What nvidia-smi last said (absent without a probe, e.g. a fixed TRAINYARD_GPU_SLOTS).
    const probed = (name: string, help: string, value: (s: { memoryUsedGb: number; utilization: number | null }) => number | null) =>
      new client.Gauge({
        name,
        help,
        labelNames: ['gpu', 'uuid'],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const g of service.gpuHistory().devices) {
            const last = g.samples[g.samples.length - 1];
            const v = last ? value(last) : null;
            if (v !== null) this.set({ gpu: String(g.index), uuid: g.uuid }, v);
          }
        },
      });
    probed('trainyard_gpu_memory_used_bytes', 'Memory in use on each GPU at the last probe (all processes)', (s) =>
      Math.round(s.memoryUsedGb * GB),
    );
    probed('trainyard_gpu_utilization_percent', 'GPU utilisation at the last probe', (s) => s.utilization);
    new client.Gauge({
      name: 'trainyard_gpu_holder',
      help: '1 for each task holding a device',
      labelNames: ['device', 'gpu', 'task'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const d of (await read()).queue?.devices ?? [])
          for (const h of d.holders) this.set({ device: d.id, gpu: String(d.gpuIndex), task: h.taskId }, 1);
      },
    });
    this.idleGap = new client.Histogram({
      name: 'trainyard_gpu_idle_gap_seconds',
      help: "Seconds a device held no task between one task's release and the next one's assignment",
      labelNames: ['device'],
      buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600],
      registers: [this.registry],
    });
    new client.Gauge({
      name: 'trainyard_queue_waiting_tasks',
      help: `Queued tasks by why they wait (the first ${QUEUE_SCRAPE_LIMIT} classified, the rest UNCLASSIFIED)`,
      labelNames: ['reason'],
      registers: [this.registry],
      async collect() {
        this.reset();
        const { queue } = await read();
        if (!queue) return;
        const n = new Map<string, number>([...WAIT_CODES, 'UNCLASSIFIED'].map((c) => [c, 0]));
        for (const q of queue.queued) n.set(q.reason.code, (n.get(q.reason.code) ?? 0) + 1);
        n.set('UNCLASSIFIED', Math.max(0, queue.queuedCount - queue.queued.length));
        for (const [reason, v] of n) this.set({ reason }, v);
      },
    });
    new client.Histogram({
      name: 'trainyard_queue_wait_seconds',
      help: 'How long the tasks waiting now have waited since submission, by why they wait (a snapshot at each scrape)',
      labelNames: ['reason'],
      buckets: WAIT_BUCKETS,
      registers: [this.registry],
      async collect() {
        this.reset();
        const { queue, at } = await read();
        for (const q of queue?.queued ?? [])
          this.observe({ reason: q.reason.code }, Math.max(0, (at - Date.parse(q.task.createdAt)) / 1000));
      },
    });
    new client.Gauge({
      name: 'trainyard_queue_warn_at',
      help: 'The queue length over which the service warns (TRAINYARD_QUEUE_WARN_AT)',
      registers: [this.registry],
      collect() {
        this.set(service.config.queueWarnAt);
      },
    });
    new client.Gauge({
      name: 'trainyard_task_preparing_max_seconds',
      help: 'Seconds the longest-PREPARING task holding a device has been preparing (0 when none)',
      registers: [this.registry],
      async collect() {
        const { queue, at } = await read();
        if (!queue) return this.set(NaN); // no figure, not "none preparing"
        let max = 0;
        for (const d of queue.devices)
          for (const h of d.holders)
            if (h.task?.status === 'PREPARING' && h.task.startedAt) max = Math.max(max, (at - Date.parse(h.task.startedAt)) / 1000);
        this.set(max);
      },
    });
    this.run = new client.Histogram({
      name: 'trainyard_task_run_seconds',
      help: 'Time from getting a GPU slot to the end, by outcome',
      labelNames: ['status'],
      buckets: [1, 10, 60, 300, 900, 3600, 2 * 3600, 6 * 3600, 24 * 3600],
      registers: [this.registry],
    });
  }

  /** The queue and devices as an admin sees them, read once for a scrape's collectors; null queue when the database did not answer. */
  private read(): Promise<Snapshot> {
    const now = Date.now();
    if (this.snapshot) {
      const s = this.snapshot;
      return s.then((v) => (now - v.at < SNAPSHOT_MS ? v : this.fresh()));
    }
    return this.fresh();
  }

  private fresh(): Promise<Snapshot> {
    const at = Date.now();
    this.snapshot = answerWithin(this.service.queue({ user: 'metrics', admin: true }, QUEUE_SCRAPE_LIMIT)).then(
      (queue) => ({ at, queue }),
      () => ({ at, queue: null }),
    );
    return this.snapshot;
  }

  /** Called with events this process saw committed and the tasks as they now stand. */
  observe(events: StoredTaskEvent[], tasks: Map<string, TaskRecord>): void {
    for (const e of events) {
      this.trackDevices(e);
      const t = tasks.get(e.streamId);
      if (!t) continue;
      if (e.type === 'TaskAssigned' && t.startedAt) {
        this.wait.observe(Math.max(0, (Date.parse(t.startedAt) - Date.parse(t.createdAt)) / 1000));
      }
      if ((e.type === 'TaskCompleted' || e.type === 'TaskFailed' || e.type === 'TaskCancelled') && t.startedAt && t.finishedAt) {
        this.run.observe({ status: t.status }, Math.max(0, (Date.parse(t.finishedAt) - Date.parse(t.startedAt)) / 1000));
      }
    }
  }

  /** Idle gaps: a device's last holder released it at one event, the next task assigned it at another. */
  private trackDevices(e: StoredTaskEvent): void {
    const at = Date.parse(e.recordedAt);
    if (e.type === 'TaskAssigned') {
      const ids = [...new Set(e.data.devices.map((d) => d.deviceId))];
      this.release(e.streamId, at);
      this.devicesOf.set(e.streamId, ids);
      for (const id of ids) {
        const holders = this.holdersSeen.get(id) ?? new Set<string>();
        const since = this.idleSince.get(id);
        if (!holders.size && since !== undefined) this.idleGap.observe({ device: id }, Math.max(0, (at - since) / 1000));
        this.idleSince.delete(id);
        holders.add(e.streamId);
        this.holdersSeen.set(id, holders);
      }
    } else if (METRIC_EVENTS.has(e.type)) this.release(e.streamId, at);
  }

  private release(taskId: string, at: number): void {
    for (const id of this.devicesOf.get(taskId) ?? []) {
      const holders = this.holdersSeen.get(id);
      holders?.delete(taskId);
      if (!holders?.size) this.idleSince.set(id, at);
    }
    this.devicesOf.delete(taskId);
  }
}
