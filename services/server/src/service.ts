// The service: wires the store, the GPU probe, the runner and the event feed, and offers the
// operations the API exposes. Procedures in router.ts only validate and translate errors.
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { sep } from 'node:path';
import { estimateMemoryGb, oomRisk } from '@trainyard/catalogue';
import { expectedStarts } from '@trainyard/domain/expected-start';
import {
  accountsFrom,
  DEFAULT_QUOTA_WINDOW_HOURS,
  EVENTS_LEAVING_RUNS_UNCHANGED,
  type Account,
  decideLostDevices,
  evolve,
  fifoOrder,
  gb,
  initialState,
  isActive,
  isDeploymentStream,
  policyByName,
  TaskNotFoundError,
  toRecord,
  type StoredTaskEvent,
  type TaskRecord,
  type TaskSpec,
  type Run,
  type WaitReason,
} from '@trainyard/domain';
import {
  configureDevices,
  countQueued,
  databaseErrorMessage,
  ensureProjectionCurrent,
  isConnectionError,
  isStatementLimit,
  lastLogLines,
  holdersOfAbsentDevices,
  instanceLockFile,
  listDevicesWithHolders,
  listQueue,
  listQuotas,
  listTasks,
  recentRuns,
  setQuota,
  type UserQuota,
  queuedView,
  toDeviceViews,
  loadTask,
  loadTasks,
  openDatabase,
  pruneLogs,
  queryEvents,
  readLogLines,
  readStream,
  TaskStore,
  type Database,
  type LogLine,
} from '@trainyard/store';
import type { ServiceConfig } from './config';
import { FieldError, requireAdmin } from './field-error';
import { EventFeed } from './feed';
import { LiveUpdates, type TaskUpdate } from './live';
import { errorText, log as processLog } from './log';
import { devicePicture, mayReplaceDevices, resolveResources, type DevicePicture } from './devices';
import { checkGangAgainstQuota, resolvePriority } from './priorities';
import { GpuProbe, type GpuInfo } from './gpu';
import { GpuHistory } from './gpu/history';
import { answerWithin } from './answer-within';
import { datasetNotAllowedMessage, resolveDataset } from './datasets';
import { inspectDataset, type DatasetInspection, type DatasetSummary } from './dataset-inspect';
import { taskOutputDir } from './outputs';
import { resolveOutputDir } from './runner/launcher';
import { describeOutputs } from './task-outputs';
import { uploadedFileName } from './upload';
import { Runner, type RunnerLog } from './runner';
import { Deployments } from './deployments/deployments';
import { LeaseKeeper } from './lease';
import { LocalExecutor, type Executor } from './executor/port';
import { SlurmExecutor } from './executor/slurm-executor';
import type { CreateManyInput, CreateTaskInput, QuotaSetInput } from './schemas';
import { isSameProcessAlive, readProcessStartTime } from './trainer/proc';
import { parseTrainerLine } from './trainer/protocol';
import { ensurePrivateDir, writePrivateFile } from './trainer/run-folder';
import { mayRead, ownerScope, preemptedFor, queueFor, visibleEvent, visibleStop, visibleTask } from './visibility';

/** A problem with one input field, reported next to that field. */
export { FieldError };

/** What the memory estimate reads from a task. */
function estimateInputOf(model: string, config: TaskSpec['config']) {
  return {
    model,
    maxLength: config.maxLength,
    batchSize: config.batchSize,
    load8bit: config.load8bit,
    load4bit: config.load4bit,
    loraRank: config.loraRank,
  };
}

export interface Warning {
  code: 'NO_GPU' | 'OOM_RISK' | 'QUEUE_LONG' | 'GPU_BUSY' | 'UNKNOWN_MODEL_SIZE' | 'DATASET_RECORDS';
  level: 'info' | 'medium' | 'high';
  message: string;
}

export interface Actor {
  user: string;
  correlationId?: string | undefined;
  /** May see the service's internals (paths, host name, database user, trainer argv) and every user's tasks. */
  admin: boolean;
  /** The bearer token the caller came with (tokens mode); null or absent in local mode. */
  token?: { id: string; expiresAt: string | null } | null;
}

const DAY_MS = 86_400_000;
/** How often logs past their retention are looked for. */
const LOG_PRUNE_INTERVAL_MS = 3_600_000;
/**
 * The recent runs are read again at least this often, even when no event seen could have changed
 * one (a read model repaired by hand changes no event).
 */
const RECENT_RUNS_MAX_AGE_MS = 60_000;

export class TrainyardService {
  readonly probe: GpuProbe;
  readonly store: TaskStore;
  readonly runner: Runner;
  /** This instance's lease, and taking over those of instances that stopped renewing theirs. */
  readonly lease: LeaseKeeper;
  readonly feed: EventFeed;
  /** Live subscriptions, fed by one read per change for all of them. */
  readonly live: LiveUpdates;
  /** vLLM servers serving base models and completed tasks' adapters. */
  readonly deployments: Deployments;
  /** Who places and runs tasks: this machine (local) or a Slurm cluster (TRAINYARD_EXECUTOR). */
  readonly executor: Executor;
  private gpu: GpuInfo | null = null;
  /** What the probes saw over the last hour, and each task's peak GPU memory. */
  private readonly gpuSeen = new GpuHistory();
  /** The devices tasks may use and what weighs on each, as of the last probe. */
  private picture: DevicePicture;
  /** Users' limits and recent use (quotas, fair share), as of the last refresh. */
  private accounts: ReadonlyMap<string, Account> = new Map();
  private quotas = new Map<string, UserQuota>();
  /** The runs the accounts are computed from, as last read (null: never read). */
  private runs: { list: Run[]; readAt: number } | null = null;
  /** An event that may have started or ended a run was seen since the runs were read. */
  private runsChanged = true;
  /** A changed device list seen once, applied when the next probe agrees. */
  private pendingDevices: DevicePicture['devices'] | null = null;
  private gpuTimer: NodeJS.Timeout | null = null;
  private scheduleTimer: NodeJS.Timeout | null = null;
  private pruneTimer: NodeJS.Timeout | null = null;
  private lockFile: string;
  private lastScheduleError: string | null = null;

  private constructor(
    readonly config: ServiceConfig,
    readonly database: Database,
    readonly log: RunnerLog,
  ) {
    this.store = new TaskStore(database, {
      runnerId: config.runnerId,
      policy: policyByName(config.schedulerPolicy),
      deviceConditions: () => this.picture.conditions,
      accounts: () => this.accounts,
      ...(config.preemption !== 'off'
        ? { preemption: { maxPreemptions: config.maxPreemptions, fairShare: config.preemption === 'fair-share' } }
        : {}),
      reserveFraction: config.gpuMemoryReserve,
      queueDepth: config.schedulerQueueDepth,
      // A task past its deadline holds its devices until SIGKILL, the kill grace later.
      releaseGraceMs: config.killGraceMs,
      onCommit: (events) => this.onCommitted(events),
      // Submissions arriving together commit together: one transaction, one fsync, for a burst.
      groupCommit: true,
    });
    this.runner = new Runner(this.store, config, log);
    this.lease = new LeaseKeeper(this.store, this.runner, config, log);
    // Our trainers' and our deployments' vLLM servers' GPU memory is ours, not another program's.
    this.probe = new GpuProbe({
      nvidiaSmiPath: config.nvidiaSmiPath,
      ourPids: () => new Set([...this.runner.ourPids(), ...this.deployments.ourPids()]),
    });
    this.feed = new EventFeed(database.db, config.pollMs);
    this.executor =
      config.executor.kind === 'slurm' ? new SlurmExecutor(this.store, config, config.executor, this.feed, log) : new LocalExecutor();
    this.live = new LiveUpdates({
      db: database.db,
      feed: this.feed,
      logsStored: this.runner.events,
      maxSubscriptions: config.maxSubscriptions,
      maxSubscriptionsPerClient: config.maxSubscriptionsPerClient,
      logFallbackMs: Math.max(1000, config.pollMs * 4),
      isConnectionError,
    });
    this.lockFile = instanceLockFile(config.storage.dataRoot);
    this.picture = devicePicture(null, config);
    this.deployments = new Deployments({
      database,
      runsDir: config.runsDir,
      env: () => config.trainerInheritedEnv,
      getTask: (id, viewer) => this.getTask(id, { ...viewer }),
      pollMs: config.pollMs,
      killGraceMs: config.killGraceMs,
      feed: this.feed,
      log,
      conditions: () => this.picture.conditions,
      gpuNow: async () => (this.picture.source === 'probe' ? await this.probe.info() : null),
      onDevicesFreed: () => void this.scheduleNow(),
      priorityValue: (name) => this.config.priorityClasses[name],
      stableMs: config.deployments.stableMs,
      merge: { argv: config.deployments.merge, cwd: config.trainerCwd },
    });
  }

  static async start(config: ServiceConfig, log: RunnerLog = processLog): Promise<TrainyardService> {
    const lockFile = takeInstanceLock(config);
    let database: Database;
    try {
      database = await openDatabase(config.storage);
    } catch (err) {
      rmSync(lockFile, { force: true });
      throw new Error(
        `could not open the ${config.storage.url ? 'Postgres database' : `embedded database in ${config.storage.dataDir}`}: ${(err as Error).message}` +
          (config.storage.url ? '. Check DATABASE_URL and that Postgres is running.' : ''),
        { cause: err },
      );
    }
    const service = new TrainyardService(config, database, log);
    await service.boot();
    return service;
  }

  private async boot(): Promise<void> {
    const projection = await this.waitingForPeers(() => ensureProjectionCurrent(this.database));
    if (projection.rebuilt) {
      this.log.info(
        `read models refolded from the log (fold version ${projection.found} -> ${projection.version}): ` +
          `${projection.rebuilt.events} events, ${projection.rebuilt.tasks} tasks`,
      );
    }
    // The users' accounts are first needed when recovery records what ended while the service
    // was down (its transactions schedule): read meanwhile, while the GPUs are probed and the
    // feed starts. On a long history it is the largest read of a start (every run of the window).
    const accountsRead = this.refreshAccounts();
    this.gpu = await this.probeGpu();
    this.picture = devicePicture(this.gpu, this.config);
    await this.configureDevices();
    this.feed.onEvents((events) => void this.onFeed(events));
    await this.feed.start();
    await this.lease.claim();
    await accountsRead;
    // What was committed between that read and the feed's start is not delivered: read again.
    this.runsChanged = true;
    const report = await this.runner.recover();
    await this.executor.start();
    await this.deployments.recover();
    const parts = Object.entries(report)
      .filter(([, v]) => v.length)
      .map(([k, v]) => `${k} ${v.join(', ')}`);
    if (parts.length) this.log.info(`recovery: ${parts.join('; ')}`);
    await this.scheduleNow();
    this.lease.start();
    // Keep the GPU picture fresh (external processes come and go) and retry the queue.
    this.gpuTimer = setInterval(() => void this.refreshGpu(), this.config.gpuRefreshMs);
    this.gpuTimer.unref();
    this.scheduleTimer = setInterval(() => void this.scheduleNow(), Math.max(1000, this.config.pollMs * 4));
    this.scheduleTimer.unref();
    if (this.config.logRetentionDays > 0) {
      void this.pruneOldLogs();
      this.pruneTimer = setInterval(() => void this.pruneOldLogs(), LOG_PRUNE_INTERVAL_MS);
      this.pruneTimer.unref();
    }
  }

  /**
   * `work` again for as long as it stops at the statement limit on a database that answers: at
   * start-up that is a wait for another instance, which holds the read models' version while it
   * refolds them after an upgrade (minutes on a long log).
   */
  private async waitingForPeers<T>(work: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        return await work();
      } catch (err) {
        if (!isStatementLimit(err)) throw err;
        this.log.info(
          `waiting for another instance (it holds the read models' version, refolding them after an upgrade): ${errorText(err)}`,
        );
      }
    }
  }

  /** The retention policy of trainer output: logs of tasks ended over logRetentionDays ago go. */
  async pruneOldLogs(): Promise<number> {
    try {
      const n = await pruneLogs(this.database.db, new Date(Date.now() - this.config.logRetentionDays * DAY_MS));
      if (n)
        this.log.info(`deleted ${n} log lines of tasks ended over ${this.config.logRetentionDays} days ago (TRAINYARD_LOG_RETENTION_DAYS)`);
      return n;
    } catch (err) {
      this.log.warn(`pruning old logs failed: ${errorText(err)}`);
      return 0;
    }
  }

  private refreshing = false;

  private async refreshGpu(): Promise<void> {
    if (this.refreshing) return; // one at a time: a slow nvidia-smi must not pile refreshes up
    this.refreshing = true;
    try {
      await this.refreshDevices();
      await this.refreshAccounts();
    } finally {
      this.refreshing = false;
    }
  }

  /**
   * Read users' limits and compute each user's standing (accountsFrom) at this time, from the
   * recent runs: read again only after an event that may have changed one, or when the last read
   * is over a minute old. On a long history the window holds many runs (125,000 in the 1M-event
   * benchmark), and this runs at every GPU refresh while trainers report every second.
   */
  private async refreshAccounts(): Promise<void> {
    const now = Date.now();
    const reread = this.runsChanged || !this.runs || now - this.runs.readAt >= RECENT_RUNS_MAX_AGE_MS;
    // Cleared before the read: an event delivered while it runs marks the runs changed again.
    if (reread) this.runsChanged = false;
    try {
      const windowMs = Math.max(4 * this.config.fairShareHalfLifeMs, DEFAULT_QUOTA_WINDOW_HOURS * 3_600_000);
      const [limits, runs] = await Promise.all([
        listQuotas(this.database.db),
        reread || !this.runs ? recentRuns(this.database.db, new Date(now - windowMs)) : this.runs.list,
      ]);
      if (reread) this.runs = { list: runs, readAt: now };
      this.quotas = new Map(limits.map((q) => [q.name, q]));
      this.accounts = accountsFrom(runs, limits, now, this.config.fairShareHalfLifeMs);
    } catch (err) {
      if (reread) this.runsChanged = true;
      this.log.warn(`could not read users' quotas and use (kept the last ones): ${errorText(err)}`);
    }
  }

  /** Every user's limits and current standing (admins). */
  async quotaList(actor: Actor) {
    requireAdmin(actor);
    await this.refreshAccounts();
    return [...this.quotas.values()].map((q) => ({ ...q, ...this.standing(q.name) }));
  }

  /** Set a user's limits (admins); the scheduler uses them from its next pass. */
  async setQuota(input: QuotaSetInput, actor: Actor) {
    requireAdmin(actor);
    if (input.maxPriority && this.config.priorityClasses[input.maxPriority] === undefined)
      throw new FieldError('maxPriority', `no priority class named ${input.maxPriority}`);
    const { user, ...set } = input;
    const q = await setQuota(this.database.db, user, set);
    if (!q) throw new FieldError('user', `no user named ${user} (add one with trainyard admin user add)`);
    await this.refreshAccounts();
    await this.scheduleNow();
    return { ...q, ...this.standing(q.name) };
  }

  private standing(user: string) {
    const a = this.accounts.get(user);
    return {
      gpuHoursUsed: Math.round((a?.gpuHoursUsed ?? 0) * 100) / 100,
      usageGpuHours: Math.round(((a?.usageGpuSeconds ?? 0) / 3600) * 100) / 100,
    };
  }

  private async refreshDevices(): Promise<void> {
    const before = this.picture;
    this.gpu = await this.probeGpu();
    const next = devicePicture(this.gpu, this.config);
    const changed = JSON.stringify(before.devices) !== JSON.stringify(next.devices);
    // A changed device list stops the tasks on devices that left, so it must be real: a probe
    // that may not replace them (mayReplaceDevices) keeps the devices as they were, and a change
    // counts once two probes in a row agree on it.
    const unsure = !mayReplaceDevices(before.source, next.source, Boolean(this.gpu.error));
    if (changed && (unsure || JSON.stringify(this.pendingDevices) !== JSON.stringify(next.devices))) {
      this.pendingDevices = unsure ? null : next.devices;
      this.picture = { ...before, conditions: next.source === before.source ? next.conditions : before.conditions };
      return;
    }
    this.pendingDevices = null;
    this.picture = next;
    if (changed) {
      this.log.warn(
        `the devices changed: ${before.devices.map((d) => d.id).join(', ') || 'none'} -> ${next.devices.map((d) => d.id).join(', ') || 'none'}`,
      );
      await this.configureDevices().catch((err: Error) => this.log.warn(`could not record the new devices: ${errorText(err)}`));
    }
    const blocked = (p: DevicePicture) => [...p.conditions.values()].filter((c) => c.blockedReason).length;
    if (blocked(this.picture) < blocked(before) || this.picture.devices.length > before.devices.length) await this.scheduleNow();
  }

  /**
   * Record the devices in the database. A device gone from the inventory stays while a task holds
   * it, marked absent (it takes no new work); a task of ours on it is stopped and fails as lost
   * (decideLostDevices), and the queue view shows the device absent until then.
   */
  private async configureDevices(): Promise<void> {
    // Under Slurm no device of this machine takes tasks: Slurm places them.
    await configureDevices(this.database.db, this.executor.placesLocally ? this.picture.devices : []);
    const absent = await holdersOfAbsentDevices(this.database.db);
    const present = new Set(this.picture.devices.map((d) => d.id));
    const ours = absent.flatMap((h) => (h.record && h.record.runnerId === this.config.runnerId ? [h.record] : []));
    for (const { taskId, command } of decideLostDevices(present, new Map(ours.map((t) => [t.id, t])).values())) {
      this.log.warn(`task ${taskId}: ${command.message}`);
      await this.store
        .execute(taskId, command, { actor: 'inventory' })
        .catch((err: Error) => this.log.warn(`task ${taskId}: ${errorText(err)}`));
    }
  }

  /** Fill free slots from the queue; failures (database away) are retried on the next tick. */
  private async scheduleNow(): Promise<void> {
    try {
      await this.store.schedule({ actor: 'scheduler' });
      if (this.lastScheduleError) this.log.info('scheduling works again');
      this.lastScheduleError = null;
    } catch (err) {
      // Say it once per distinct problem, not once a second while the database is away.
      const msg = errorText(err);
      if (msg !== this.lastScheduleError) this.log.warn(`scheduling failed, retrying every second: ${msg}`);
      this.lastScheduleError = msg;
    }
  }

  /** Devices other programs hold beyond the configured share (they take no work), with why. */
  deviceBlocks(): Map<string, string> {
    const blocks = new Map<string, string>();
    for (const [id, c] of this.picture.conditions) if (c.blockedReason) blocks.set(id, c.blockedReason);
    return blocks;
  }

  /** The devices tasks may use now (for validation and display). */
  devices(): DevicePicture {
    return this.picture;
  }

  private onCommitted(events: StoredTaskEvent[]): void {
    this.feed.poke();
    // Local commits reach the runner at once (the feed would also deliver them, a bit later).
    void this.dispatch(events, true);
  }

  private async onFeed(events: StoredTaskEvent[]): Promise<void> {
    if (events.some((e) => !EVENTS_LEAVING_RUNS_UNCHANGED.has(e.type))) this.runsChanged = true;
    await this.dispatch(events);
  }

  /** Hand the runner every task this batch touched that it may have to act on. */
  private async dispatch(events: StoredTaskEvent[], local = false): Promise<void> {
    // A warm trainer waits while tasks are queued (runner/standby-pool.ts).
    if (events.some((e) => e.type === 'TaskQueued' || e.type === 'TaskCancelled' || e.type === 'TaskHeld')) this.runner.queueChanged();
    const forRunner = events.filter((e) => e.type === 'TaskAssigned' || e.type === 'StopRequested');
    if (!forRunner.length) return;
    // The tasks the runner's own commands start it takes from their results, as soon as they
    // return (Runner.append): after that, those need no read (the read would run beside their launch).
    if (local) await new Promise((r) => setImmediate(r));
    const relevant = new Set(
      forRunner.filter((e) => e.type === 'StopRequested' || !this.runner.runsAt(e.streamId, e.version)).map((e) => e.streamId),
    );
    if (!relevant.size) return;
    try {
      const tasks = await loadTasks(this.database.db, [...relevant]);
      for (const t of tasks.values()) this.runner.observe(t);
    } catch (err) {
      this.log.warn(`could not load tasks to dispatch: ${errorText(err)}`);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Operations

  /** Asks nvidia-smi, and keeps what it saw for the history and our tasks' peak memory. */
  private async probeGpu(): Promise<GpuInfo> {
    const info = await this.probe.info();
    this.gpuSeen.record(info, this.runner.taskOfPid(), Date.now());
    return info;
  }

  /** Each GPU's memory in use and utilisation over the last hour, as the probes saw them. */
  gpuHistory() {
    const now = Date.now();
    return { now: new Date(now).toISOString(), devices: this.gpuSeen.devices(now) };
  }

  /**
   * A task's recorded progress reports after `after` (a log position), `limit` of them, as a
   * series; and the most GPU memory its trainer was seen holding (while this service ran it).
   */
  async metrics(id: string, after: string | null, limit: number, actor: Actor) {
    await this.getTask(id, actor);
    const events = await queryEvents(this.database.db, {
      streamId: id,
      types: ['ProgressRecorded'],
      afterPosition: after ?? undefined,
      limit,
    });
    const points = events.flatMap((e) =>
      e.type === 'ProgressRecorded'
        ? [
            {
              position: e.position,
              at: Date.parse(e.recordedAt),
              step: e.data.step,
              totalSteps: e.data.totalSteps,
              epoch: e.data.epoch,
              loss: e.data.loss,
              learningRate: e.data.learningRate ?? null,
            },
          ]
        : [],
    );
    return {
      points,
      nextCursor: events.length === limit ? events[events.length - 1]!.position : null,
      peakMemoryGb: this.gpuSeen.peakOf(id),
    };
  }

  /** Where a task's outputs are (absolute), how big its output folder and each of its artifacts are. */
  async outputs(id: string, actor: Actor) {
    const task = await this.getTask(id, actor);
    return describeOutputs(resolveOutputDir(this.config, task), task.artifacts);
  }

  async gpuInfo(): Promise<GpuInfo> {
    this.gpu = await this.probeGpu();
    return this.gpu;
  }

  async createTask(
    input: CreateTaskInput,
    actor: Actor,
  ): Promise<{ task: TaskRecord; warnings: Warning[]; created: boolean; dataset: DatasetSummary }> {
    const id = newTaskId();
    const { specFor, dataset } = await this.prepareTask(input, actor);
    const spec = specFor(id, input.idempotencyKey ?? null);
    const [warnings, result] = await Promise.all([
      this.warningsFor(spec),
      this.store.submit(id, spec, { actor: actor.user, correlationId: actor.correlationId ?? null }),
    ]);
    if (!result.created) return { task: result.task, warnings: [], created: false, dataset: dataset.summary };
    for (const message of dataset.warnings) warnings.push({ code: 'DATASET_RECORDS', level: 'medium', message });
    if (result.task.status === 'QUEUED') {
      // Counted in the submitting transaction when the store could; otherwise now.
      const ahead = result.queuedAhead ?? Math.max(0, (await countQueued(this.database.db)) - 1);
      if (ahead >= this.config.queueWarnAt)
        warnings.push({
          code: 'QUEUE_LONG',
          level: 'medium',
          message:
            ahead === 1
              ? '1 task is already queued: this one waits for it.'
              : `${ahead} tasks are already queued: this one waits for all of them.`,
        });
    }
    return { task: result.task, warnings, created: true, dataset: dataset.summary };
  }

  /**
   * Everything a submission checks and resolves before the store sees it (dataset inside the
   * roots and readable, resources against the devices, the owner's quota and priority cap), one
   * home for tasks.create and tasks.createMany. The spec is made per id (its default name and
   * output folder hold the id). `datasets` shares dataset checks between the items of a batch.
   */
  private async prepareTask(
    input: CreateTaskInput,
    actor: Actor,
    datasets?: Map<string, Promise<{ datasetPath: string | null; check: DatasetInspection | null }>>,
  ): Promise<{
    specFor: (id: string, idempotencyKey: string | null) => TaskSpec;
    dataset: { summary: DatasetSummary; warnings: string[] };
  }> {
    const checkDataset = async () => {
      // Stored as its real path: the runner checks at launch that it still is that path.
      const datasetPath = resolveDataset(input.datasetPath, this.config.datasetsRoots);
      return { datasetPath, check: datasetPath ? await inspectDataset(datasetPath) : null };
    };
    let pending = datasets?.get(input.datasetPath);
    if (!pending) {
      pending = checkDataset();
      datasets?.set(input.datasetPath, pending);
    }
    const { datasetPath, check: dataset } = await pending;
    if (!datasetPath || !dataset) throw new FieldError('datasetPath', datasetNotAllowedMessage(input.datasetPath));
    if (!dataset.ok) throw new FieldError('datasetPath', `dataset ${input.datasetPath}: ${dataset.problem}`);
    const estimate = estimateMemoryGb(estimateInputOf(input.model, input.config));
    const resources = resolveResources(
      input.resources,
      estimate.estimateGb,
      this.executor.requestDevices(this.picture.devices),
      this.config.gpuMemoryReserve,
    );
    const quota = this.quotas.get(actor.user) ?? null;
    checkGangAgainstQuota(resources.gpus, quota);
    const priority = resolvePriority(input.priority, this.config.priorityClasses, quota);
    const timeoutMs = input.timeoutMs ?? this.config.defaultTimeoutMs;
    const datasetFile = uploadedFileName(datasetPath.split(sep).pop() ?? datasetPath);
    return {
      specFor: (id, idempotencyKey) => ({
        name: input.name ?? defaultTaskName(id, input.model, datasetFile),
        model: input.model,
        datasetPath,
        outputDir: taskOutputDir(id, input.outputDir),
        config: input.config,
        timeoutMs,
        resources,
        priority,
        owner: actor.user,
        idempotencyKey,
      }),
      dataset,
    };
  }

  /**
   * Several tasks in one call (a sweep): every item is checked as tasks.create checks it (an
   * error names the item: tasks.3.config.batchSize), then all are submitted in one transaction,
   * in the order given, all or nothing. With an idempotency key, the same request again gives
   * the same tasks back (created false); a different request under the same key is refused
   * (IdempotencyConflictError), and nothing is written.
   */
  async createMany(input: CreateManyInput, actor: Actor): Promise<{ tasks: TaskRecord[]; warnings: Warning[]; created: boolean }> {
    const max = this.config.createManyMax;
    if (input.tasks.length > max)
      throw new FieldError('tasks', `${input.tasks.length} tasks in one call; at most ${max} (TRAINYARD_CREATE_MANY_MAX)`);
    const datasets = new Map<string, Promise<{ datasetPath: string | null; check: DatasetInspection | null }>>();
    const prepared: Awaited<ReturnType<TrainyardService['prepareTask']>>[] = [];
    for (const [i, item] of input.tasks.entries()) {
      try {
        prepared.push(await this.prepareTask(item, actor, datasets));
      } catch (err) {
        if (err instanceof FieldError) throw new FieldError(`tasks.${i}.${err.field}`, err.message);
        throw err;
      }
    }
    const key = input.idempotencyKey ?? null;
    const itemKey = (i: number) => (key === null ? null : batchItemKey(key, i));
    const meta = { actor: actor.user, correlationId: actor.correlationId ?? null };
    const requests = prepared.map((p, i) => {
      const taskId = newTaskId();
      return { taskId, spec: p.specFor(taskId, itemKey(i)), meta };
    });
    const results = await this.store.submitAll(requests, async (results, tx) => {
      if (key === null) return;
      const repeated = results.filter((r) => !r.created).length;
      if (repeated === 0) return; // a fresh key: item 0 did not exist, so no item of it did
      const same =
        repeated === results.length &&
        results.every((r, i) => sameSubmission(r.task.spec, prepared[i]!.specFor(r.task.id, itemKey(i)))) &&
        // An earlier request under this key with more tasks than this one is a different request.
        (await tx.findByIdempotencyKey(actor.user, batchItemKey(key, results.length))) === null;
      if (!same) throw new IdempotencyConflictError(key);
    });
    const created = results.every((r) => r.created);
    if (!created) return { tasks: results.map((r) => r.task), warnings: [], created: false };
    const warnings: Warning[] = [];
    const seen = new Set<string>();
    const add = (w: Warning) => {
      if (seen.has(w.message)) return;
      seen.add(w.message);
      warnings.push(w);
    };
    const kinds = new Map<string, TaskSpec>();
    for (const r of requests) kinds.set(JSON.stringify([r.spec.model, r.spec.config, r.spec.resources]), r.spec);
    for (const spec of kinds.values()) for (const w of await this.warningsFor(spec)) add(w);
    for (const p of prepared) for (const message of p.dataset.warnings) add({ code: 'DATASET_RECORDS', level: 'medium', message });
    const queued = results.filter((r) => r.task.status === 'QUEUED');
    const ahead = queued[0]?.queuedAhead;
    if (queued.length && ahead !== undefined && ahead >= this.config.queueWarnAt)
      add({
        code: 'QUEUE_LONG',
        level: 'medium',
        message: `${ahead} tasks were already queued: these ${queued.length} wait for all of them.`,
      });
    return { tasks: results.map((r) => r.task), warnings, created: true };
  }

  private async warningsFor(spec: TaskSpec): Promise<Warning[]> {
    const warnings: Warning[] = [];
    // The picture the 5-second refresh keeps, not a fresh probe: running nvidia-smi (a fork
    // of this process and its own start-up, ~100 ms on a GPU machine) must not sit in the path
    // of a submission. Only the first one, before any probe finished, waits for it.
    const gpu = this.gpu ?? (await this.gpuInfo());
    if (!gpu.available && this.executor.placesLocally) {
      warnings.push({ code: 'NO_GPU', level: 'high', message: `No GPU detected: ${gpu.recommendation}` });
    }
    const estimateInput = estimateInputOf(spec.model, spec.config);
    const { estimateGb, paramsB } = estimateMemoryGb(estimateInput);
    if (paramsB === null || estimateGb === null) {
      warnings.push({
        code: 'UNKNOWN_MODEL_SIZE',
        level: 'info',
        message: `Cannot tell the size of ${spec.model} from its name, so its memory need was not estimated.`,
      });
    } else if (this.picture.devices.some((d) => d.memoryMb > 0)) {
      // Against the memory it is sure to get: the figure asked for, else the smallest device.
      const known = this.picture.devices.filter((d) => d.memoryMb > 0);
      const room = spec.resources.memoryMb ?? Math.min(...known.map((d) => d.memoryMb));
      const risk = oomRisk(estimateGb, gb(room), estimateInput);
      if (risk.level !== 'low') warnings.push({ code: 'OOM_RISK', level: risk.level, message: risk.message });
    }
    const blocked = this.deviceBlocks();
    if (blocked.size) warnings.push({ code: 'GPU_BUSY', level: 'medium', message: [...blocked.values()].join(' ') });
    return warnings;
  }

  /** A task the caller may see: another user's reads as not found (no existence leak). */
  async getTask(id: string, actor: Actor): Promise<TaskRecord> {
    const task = visibleTask(actor, await loadTask(this.database.db, id));
    if (!task) throw new TaskNotFoundError(id);
    return (await this.scrubbed(actor, [task]))[0]!;
  }

  /** Records as `actor` may read them: a preemption for another user's task names neither (visibility.ts). */
  private async scrubbed<T extends TaskRecord>(actor: Actor, tasks: T[]): Promise<T[]> {
    if (actor.admin) return tasks;
    const headOf = (t: T) => (t.stop?.reason === 'preempt' ? preemptedFor(t.stop.message) : null);
    const heads = [...new Set(tasks.map(headOf).filter((h) => h !== null))];
    if (!heads.length) return tasks;
    const loaded = await loadTasks(this.database.db, heads);
    return tasks.map((t) => {
      const head = headOf(t);
      return head === null ? t : visibleStop(actor, t, loaded.get(head)?.spec.owner ?? null);
    });
  }

  /** The tasks the caller may see: their own, or every task for an admin. */
  listTasks(q: Omit<Parameters<typeof listTasks>[1], 'owner'> & { ownerFilter?: string | undefined }, actor: Actor) {
    const { ownerFilter, ...rest } = q;
    const scope = ownerScope(actor);
    // Another user's tasks are not there for a caller who may not see them.
    if (scope !== undefined && ownerFilter !== undefined && ownerFilter !== scope) return Promise.resolve({ items: [], nextCursor: null });
    return listTasks(this.database.db, { ...rest, owner: scope ?? ownerFilter }).then(async (page) => ({
      ...page,
      items: await this.scrubbed(actor, page.items),
    }));
  }

  /** Who the caller is, as the API reports it (users.me). */
  me(actor: Actor) {
    return { name: actor.user, admin: actor.admin, auth: this.config.auth, token: actor.token ?? null };
  }

  async cancelTask(id: string, reason: string | undefined, actor: Actor): Promise<TaskRecord> {
    await this.getTask(id, actor);
    const r = await this.store.execute(
      id,
      { type: 'cancel', reason: reason ?? null },
      { actor: actor.user, correlationId: actor.correlationId ?? null },
    );
    return (await this.scrubbed(actor, [r.task]))[0]!;
  }

  /**
   * Pause: a queued task keeps its place but is not started; a running one is preempted first
   * (it checkpoints, stops, and goes back to the queue held). Resume releases it.
   */
  async pauseTask(id: string, reason: string | undefined, actor: Actor): Promise<TaskRecord> {
    const task = await this.getTask(id, actor);
    const meta = { actor: actor.user, correlationId: actor.correlationId ?? null };
    if (isActive(task.status) && task.stop?.reason !== 'preempt')
      await this.store.execute(id, { type: 'preempt', message: `paused by ${actor.user}: it checkpoints and waits to be resumed` }, meta);
    return (await this.scrubbed(actor, [(await this.store.execute(id, { type: 'hold', reason: reason ?? null }, meta)).task]))[0]!;
  }

  async resumeTask(id: string, actor: Actor): Promise<TaskRecord> {
    await this.getTask(id, actor);
    const r = await this.store.execute(id, { type: 'release' }, { actor: actor.user, correlationId: actor.correlationId ?? null });
    return (await this.scrubbed(actor, [r.task]))[0]!;
  }

  async deleteTask(id: string, actor: Actor): Promise<{ id: string; deleted: true }> {
    await this.getTask(id, actor);
    await this.store.execute(id, { type: 'delete' }, { actor: actor.user, correlationId: actor.correlationId ?? null });
    return { id, deleted: true };
  }

  async logs(
    id: string,
    afterSeq: number,
    limit: number,
    includeProtocol: boolean,
    actor: Actor,
  ): Promise<{ lines: LogLine[]; nextSeq: number; hasMore: boolean }> {
    await this.getTask(id, actor);
    const raw = await readLogLines(this.database.db, id, afterSeq, limit + 1);
    const page = raw.slice(0, limit);
    const lines = includeProtocol ? page : page.filter((l) => l.stream === 'stderr' || parseTrainerLine(l.line).kind === 'log');
    return { lines, nextSeq: page.length ? page[page.length - 1]!.seq : afterSeq, hasMore: raw.length > limit };
  }

  /** The last `count` stored lines of a task's log, oldest first (protocol lines included). */
  async lastLogLines(id: string, count: number): Promise<LogLine[]> {
    return lastLogLines(this.database.db, id, count);
  }

  /**
   * Task changes as they are committed, after `lastEventId` or from now on (see live.ts): of the
   * caller's tasks only, unless an admin. A user following one task must be able to see it.
   */
  async *taskUpdates(o: {
    taskId?: string | undefined;
    lastEventId?: string | null | undefined;
    client: string;
    signal: AbortSignal | undefined;
    actor: Actor;
  }): AsyncGenerator<TaskUpdate> {
    if (o.taskId !== undefined && !o.actor.admin) await this.getTask(o.taskId, o.actor);
    for await (const u of this.live.taskUpdates({ taskId: o.taskId, lastEventId: o.lastEventId, client: o.client, signal: o.signal })) {
      if (o.actor.admin) yield u;
      else if (u.task !== null && mayRead(o.actor, u.task))
        yield { event: visibleEvent(o.actor, u.event), task: (await this.scrubbed(o.actor, [u.task]))[0]! };
    }
  }

  /** A task's log lines after `afterSeq` as they are stored; protocol lines only if asked for. */
  async *logLines(o: {
    id: string;
    afterSeq: number;
    includeProtocol: boolean;
    client: string;
    signal: AbortSignal | undefined;
    actor: Actor;
  }): AsyncGenerator<LogLine> {
    const task = await this.getTask(o.id, o.actor);
    for await (const line of this.live.logLines({
      taskId: o.id,
      after: o.afterSeq,
      status: task.status,
      client: o.client,
      signal: o.signal,
    })) {
      if (!o.includeProtocol && line.stream === 'stdout' && parseTrainerLine(line.line).kind === 'message') continue;
      yield line;
    }
  }

  /**
   * The devices with their holders, the first `limit` queued tasks in order with why each waits
   * (the policy asked now, on the same picture it schedules with), how many wait in all. Other
   * users' tasks are only places and memory to a caller who is not an admin (visibility.ts).
   */
  async queue(actor: Actor, limit = 500) {
    const db = this.database.db;
    // Three reads side by side (one round trip of waiting).
    const [devices, queued, count] = await Promise.all([listDevicesWithHolders(db), listQueue(db, limit), countQueued(db)]);
    // A holder is a task or a deployment (its id a dep- one).
    const holderIds = [...new Set(devices.flatMap((d) => d.holders.map((h) => h.taskId)))];
    const holderTasks = await loadTasks(
      db,
      holderIds.filter((id) => !isDeploymentStream(id)),
    );
    const views = toDeviceViews(devices, this.picture.conditions);
    // The policy asked now, on the same picture it schedules with.
    const input = {
      devices: views,
      queue: queued.map(queuedView),
      now: Date.now(),
      reserveFraction: this.config.gpuMemoryReserve,
      releaseGraceMs: this.config.killGraceMs,
      accounts: this.accounts,
    };
    const decision = this.store.policy.schedule(input);
    // Deployments hold memory like any holder; the tasks they hold up wait HELD_BY_DEPLOYMENT.
    const { holders: holderDeployments, held } = await this.deployments.inQueue(holderIds, views, fifoOrder(input.queue));
    // When each should have started at the latest, from the timeouts of those running and ahead.
    const starts = expectedStarts(this.store.policy, input);
    const starting: WaitReason = {
      code: 'STARTING',
      message: 'Its devices are free: it starts with the next scheduling pass.',
      reservedStart: null,
    };
    return queueFor(actor, {
      policy: this.store.policy.name,
      devices: views.map((v, i) => ({
        id: v.id,
        gpuIndex: v.gpuIndex,
        uuid: v.uuid,
        name: v.name,
        migProfile: v.migProfile,
        memoryGb: gb(v.memoryMb),
        externalMemoryGb: gb(v.externalMemoryMb),
        present: devices[i]!.present,
        blockedReason: v.blockedReason,
        holders: v.holders.map((h) => ({
          taskId: h.taskId,
          memoryGb: gb(h.memoryMb),
          exclusive: h.exclusive,
          endsBy: h.endsBy === null ? null : new Date(h.endsBy).toISOString(),
          task: holderTasks.get(h.taskId) ?? null,
          deployment: holderDeployments.get(h.taskId) ?? null,
        })),
      })),
      queued: queued.map((task, i) => {
        const at = starts.get(task.id);
        return {
          position: i + 1,
          task,
          reason: this.executorWait(task.id) ?? held.get(task.id) ?? decision.waiting.get(task.id) ?? starting,
          expectedStart: at === undefined || at === null || !this.executor.placesLocally ? null : new Date(at).toISOString(),
        };
      }),
      reservation: decision.reservation ? { ...decision.reservation, startAt: new Date(decision.reservation.startAt).toISOString() } : null,
      queuedCount: count,
      warning:
        count > this.config.queueWarnAt
          ? `${count} tasks are queued (more than ${this.config.queueWarnAt}): each waits for the ones before it. Consider cancelling some or adding GPUs.`
          : null,
    });
  }

  /** Why a queued task waits when its executor says (Slurm's pending reason), else null. */
  private executorWait(taskId: string): WaitReason | null {
    const message = this.executor.queueReason(taskId);
    return message === null ? null : { code: 'WAITING_FOR_DEVICES', message, reservedStart: null };
  }

  /** The audit log of the tasks the caller may see. */
  listEvents(q: Omit<Parameters<typeof queryEvents>[1], 'owner'>, actor: Actor) {
    return queryEvents(this.database.db, { ...q, owner: ownerScope(actor) }).then((events) => events.map((e) => visibleEvent(actor, e)));
  }

  /**
   * A task's state after each of its events, a page at a time (`limit` steps after
   * `afterPosition`, and no more than `maxBytes` of them as JSON, at least one), or at one point
   * (position or time). `state` and `event` are those of the page's last step (or of the point).
   */
  async replay(
    taskId: string,
    at: { position?: string | undefined; time?: string | undefined },
    page: { afterPosition?: string | undefined; limit: number; maxBytes: number },
    actor: Actor,
  ) {
    // A deleted task replays too (its history stays), but only to whoever may see it.
    if (!actor.admin) {
      const task = await loadTask(this.database.db, taskId);
      if (!task || !mayRead(actor, task)) throw new TaskNotFoundError(taskId);
    }
    const events = await readStream(this.database.db, taskId);
    if (!events.length) throw new TaskNotFoundError(taskId);
    // A preemption for another user's task is named to an admin only (visibility.ts).
    const heads = actor.admin
      ? new Map<string, TaskRecord>()
      : await loadTasks(
          this.database.db,
          events.flatMap((e) => {
            const head = e.type === 'StopRequested' ? preemptedFor((e.data as { message: string }).message) : null;
            return head === null ? [] : [head];
          }),
        );
    const stateFor = (r: TaskRecord): TaskRecord => {
      const head = r.stop ? preemptedFor(r.stop.message) : null;
      return head === null ? r : visibleStop(actor, r, heads.get(head)?.spec.owner ?? null);
    };
    const eventFor = (e: StoredTaskEvent): StoredTaskEvent => visibleEvent(actor, e);
    let state = initialState();
    if (at.position || at.time) {
      let last: StoredTaskEvent | null = null;
      for (const e of events) {
        if (at.position && BigInt(e.position) > BigInt(at.position)) break;
        if (at.time && Date.parse(e.recordedAt) > Date.parse(at.time)) break;
        state = evolve(state, e);
        last = e;
      }
      return { steps: [], state: last ? stateFor(toRecord(state)) : null, event: last ? eventFor(last) : null, nextCursor: null };
    }
    const after = page.afterPosition ? BigInt(page.afterPosition) : -1n;
    const steps: { event: StoredTaskEvent; state: TaskRecord }[] = [];
    let bytes = 0;
    let nextCursor: string | null = null;
    for (const e of events) {
      state = evolve(state, e);
      if (BigInt(e.position) <= after) continue;
      const step = { event: eventFor(e), state: stateFor(toRecord(state)) };
      // A state holds every artifact path so far: a page is cut by size as well as by count.
      const size = JSON.stringify(step).length;
      if (steps.length >= page.limit || (steps.length > 0 && bytes + size > page.maxBytes)) {
        nextCursor = steps[steps.length - 1]!.event.position;
        break;
      }
      steps.push(step);
      bytes += size;
    }
    const last = steps[steps.length - 1];
    return { steps, state: last?.state ?? null, event: last?.event ?? null, nextCursor };
  }

  /**
   * Whether the service works, for anyone; where it keeps things (paths, host, database user,
   * trainer argv) only for an admin: a caller without that right learns nothing to aim at.
   */
  async health(actor: Pick<Actor, 'admin'>) {
    let database: 'up' | 'down' = 'up';
    let cause: string | null = null;
    try {
      await answerWithin(countQueued(this.database.db));
    } catch (err) {
      database = 'down';
      cause = databaseErrorMessage(err);
    }
    return {
      ok: database === 'up',
      storage: this.database.kind,
      version: this.config.version,
      database,
      // The driver's words may name the database host and user.
      error: cause === null ? null : actor.admin ? `database unreachable: ${cause}` : 'database unreachable',
      activeTrainers: this.runner.activeCount,
      // Which executor runs tasks and whether it answers (its words only for an admin: they may name hosts).
      executor: await this.executor.health().then((h) => ({ ...h, detail: actor.admin ? h.detail : null })),
      detail: actor.admin
        ? {
            location: this.database.location,
            instance: this.config.runnerId,
            dataRoot: this.config.storage.dataRoot,
            runsDir: this.config.runsDir,
            trainer: this.config.trainer,
          }
        : null,
    };
  }

  async close(): Promise<void> {
    if (this.gpuTimer) clearInterval(this.gpuTimer);
    if (this.scheduleTimer) clearInterval(this.scheduleTimer);
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.lease.close();
    this.live.close();
    this.feed.close();
    this.executor.close();
    this.runner.close();
    this.deployments.close();
    await this.database.close();
    rmSync(this.lockFile, { force: true });
  }
}

/** "Qwen2.5-Coder-1.5B-Instruct on docstrings · 3f9a1c": the model, the dataset file without its extension, the id's last characters. */
function defaultTaskName(id: string, model: string, datasetFile: string): string {
  const dataset = datasetFile.replace(/\.(jsonl|json)$/i, '') || datasetFile;
  return `${model.split('/').pop() || model} on ${dataset} · ${id.slice(-6)}`.slice(0, 120);
}

export function newTaskId(): string {
  // Time-ordered prefix so ids sort roughly by creation, random suffix for uniqueness.
  return `t${Date.now().toString(36)}${randomUUID().replace(/-/g, '').slice(0, 10)}`;
}

/**
 * One service per data directory: run directories (and PGlite's files) must not be shared.
 * A lock file with our pid and its start time; a stale one (that process gone) is taken over.
 */
function takeInstanceLock(config: ServiceConfig): string {
  ensurePrivateDir(config.runsDir, config.runsDir);
  const file = instanceLockFile(config.storage.dataRoot);
  if (existsSync(file)) {
    // "<pid> <start time>": after a crash the pid alone may name another process by now (pids
    // wrap at 32768 on many machines), and the service refused to start over a stranger.
    const [pidText, startTime] = readFileSync(file, 'utf8').trim().split(/\s+/);
    const pid = Number(pidText);
    const alive = startTime ? isSameProcessAlive(pid, startTime) : isAlive(pid);
    if (pid && pid !== process.pid && alive) {
      throw new Error(
        `another Trainyard service (pid ${pid}) uses ${config.storage.dataRoot}; stop it, or give this one its own TRAINYARD_DATA_DIR`,
      );
    }
  }
  writePrivateFile(file, `${process.pid} ${readProcessStartTime(process.pid) ?? ''}`.trim());
  return file;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The idempotency key of item i of a tasks.createMany call (a control character: no client key can hold one). */
function batchItemKey(key: string, i: number): string {
  return `${key}\u001f${i}`;
}

/** JSON with object keys sorted (jsonb does not keep their order), undefined members left out. */
function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.entries(v)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, x]) => `${JSON.stringify(k)}:${stableJson(x)}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

/** The stored task is what this request asks for (the same id's default name and folder). */
function sameSubmission(stored: TaskSpec, asked: TaskSpec): boolean {
  return stableJson(stored) === stableJson(asked);
}

/** A tasks.createMany idempotency key already used by a different request: the API answers CONFLICT. */
export class IdempotencyConflictError extends Error {
  constructor(readonly key: string) {
    super(
      `idempotency key ${key} was already used for a different request (other tasks or settings); nothing was written. ` +
        'Send the same request to get its tasks back, or use a new key.',
    );
    this.name = 'IdempotencyConflictError';
  }
}
