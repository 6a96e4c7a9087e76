// Prometheus metrics (prom-client). State gauges are read from the read models at scrape
// time; wait and run durations are observed as the feed sees tasks start and end.
import client from 'prom-client';
import { TASK_STATUSES, type StoredTaskEvent, type TaskRecord } from '@trainyard/domain';
import { countByStatus, countQueued, listDevicesWithHolders } from '@trainyard/store';
import { log } from './log';
import type { TrainyardService } from './service';

export class Metrics {
  readonly registry = new client.Registry();
  private readonly wait: client.Histogram;
  private readonly run: client.Histogram;

  constructor(service: TrainyardService) {
    const db = service.database.db;
    client.collectDefaultMetrics({ register: this.registry, prefix: 'trainyard_process_' });
    new client.Gauge({
      name: 'trainyard_tasks',
      help: 'Tasks by lifecycle state (deleted tasks included)',
      labelNames: ['status'],
      registers: [this.registry],
      async collect() {
        const counts = await countByStatus(db);
        for (const s of TASK_STATUSES) this.set({ status: s }, counts[s] ?? 0);
      },
    });
    new client.Gauge({
      name: 'trainyard_queue_length',
      help: 'Tasks waiting in the queue',
      registers: [this.registry],
      async collect() {
        this.set(await countQueued(db));
      },
    });
    new client.Gauge({
      name: 'trainyard_gpu_devices',
      help: 'Schedulable devices (GPUs and MIG instances) by occupancy',
      labelNames: ['state'],
      registers: [this.registry],
      async collect() {
        const devices = await listDevicesWithHolders(db);
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
      buckets: [0.01, 0.1, 1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600],
      registers: [this.registry],
    });
    this.run = new client.Histogram({
      name: 'trainyard_task_run_seconds',
      help: 'Time from getting a GPU slot to the end, by outcome',
      labelNames: ['status'],
      buckets: [1, 10, 60, 300, 900, 3600, 2 * 3600, 6 * 3600, 24 * 3600],
      registers: [this.registry],
    });
  }

  /** Called with events this process saw committed and the tasks as they now stand. */
  observe(events: StoredTaskEvent[], tasks: Map<string, TaskRecord>): void {
    for (const e of events) {
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
}
