// Deployments at the edge: the operations the API offers (create, get, list, stop, delete) and
// the IO that carries out the lifecycle's decisions. A deployment's vLLM server runs under the
// shepherd like a trainer (launch.ts: detached, its output and exit in a run folder), so it
// outlives the service and is watched again after a restart (`recover`). The watch reads the
// run folder's exit.json (the server ended: STOPPED when a stop was asked for, else FAILED),
// and while STARTING asks the server's /health and /v1/models until both answer (SERVING, with
// the endpoint and the served model names) or the start timeout passes (FAILED, killed).
import { join } from 'node:path';
import { createServer } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import {
  arbitrate,
  defaultGpuMemoryUtilization,
  deploymentView,
  fifoOrder,
  isDeploymentEnded,
  isDeploymentStream,
  memoryReleased,
  placeDeployment,
  reclaimFits,
  type DeploymentAdapter,
  type DeploymentHolder,
  type DeploymentRecord,
  type DeploymentSpec,
  type DeviceView,
  type QueuedTaskView,
  type TaskRecord,
  type WaitReason,
} from '@trainyard/domain';
import {
  DeploymentPlacementError,
  DeploymentStore,
  listDeployments,
  listDevicesWithHolders,
  listLiveDeployments,
  listQueue,
  queuedView,
  toDeviceViews,
  type Database,
  type DeviceCondition,
} from '@trainyard/store';
import type { GpuInfo } from '../gpu';
import { parseParamsB } from '@trainyard/catalogue';
import { DeploymentNotFoundError, FieldError } from '../field-error';
import { ownerScope, type Viewer } from '../visibility';
import { launchShepherd, waitForTrainerInfo } from '../trainer/launch';
import { isSameProcessAlive, signalGroup } from '../trainer/proc';
import { readExit } from '../trainer/run-folder';
import { mergePaths, runMerge } from './merge';
import { vllmServeArgv, vllmServeEnv } from './vllm-argv';
import { errorText } from '../log';

/** How long a vLLM server may take to answer /health and /v1/models (loading a model takes minutes). */
const START_TIMEOUT_MS = 15 * 60_000;
/** How long the shepherd may take to report the server's process. */
const SPAWN_TIMEOUT_MS = 30_000;
const LOOPBACK = '127.0.0.1';

export interface CreateDeploymentInput {
  taskId?: string | undefined;
  model?: string | undefined;
  /** Completed tasks whose adapters are served beside the task's (each named after its task). */
  adapters?: string[] | undefined;
  gpus?: number | undefined;
  gpuMemoryUtilization?: number | undefined;
  maxModelLen?: number | undefined;
  port?: number | undefined;
  onTrainingDemand?: DeploymentSpec['onTrainingDemand'] | undefined;
  /** A priority class name (as a task's); a training task of a lower one never makes it yield. */
  priority?: string | undefined;
  /** Serve the task's adapter merged into the base weights instead of as a LoRA module. */
  merge?: boolean | undefined;
}

export interface DeploymentsOptions {
  database: Database;
  /** Run folders of deployments live under `<runsDir>/deployments/`. */
  runsDir: string;
  /** The environment the vLLM server gets (the trainer allow-list). */
  env: () => Record<string, string>;
  /** A task as the caller may see it (throws TaskNotFoundError otherwise). */
  getTask(id: string, viewer: Viewer): Promise<TaskRecord>;
  pollMs: number;
  killGraceMs: number;
  /** The service's one tail of the log: `onEvents` hands over each committed batch. */
  feed: { onEvents(fn: (events: { streamId: string }[]) => void): () => void };
  log: { info(m: string): void; warn(m: string): void };
  /** What the probe sees on each device now (memory other programs hold, blocks). */
  conditions: () => ReadonlyMap<string, DeviceCondition>;
  /** A fresh nvidia-smi reading (null where there is none: memory cannot be observed, vLLM's /is_sleeping is trusted). */
  gpuNow: () => Promise<GpuInfo | null>;
  /** Devices were freed (a deployment's memory released): run the scheduler. */
  onDevicesFreed: () => void;
  /** A priority class's value by name, or undefined when there is none of that name. */
  priorityValue: (name: string) => number | undefined;
  /** Serving this long since it last came up gives a deployment its restart budget back (restartsCounted). */
  stableMs?: number | undefined;
  /** The adapter merge (TRAINYARD_MERGE's argv, run in `cwd`) for deployments created with merge. */
  merge: { argv: string[]; cwd: string };
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, LOOPBACK, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });

function adapterOf(task: TaskRecord, field: string): DeploymentAdapter {
  if (task.status !== 'COMPLETED')
    throw new FieldError(field, `task ${task.id} is ${task.status}; only a COMPLETED task's adapter can be served`);
  const path = task.artifacts[task.artifacts.length - 1];
  if (!path) throw new FieldError(field, `task ${task.id} recorded no artifact to serve`);
  return { name: task.id, path, taskId: task.id };
}

export class Deployments {
  readonly store: DeploymentStore;
  private readonly watching = new Map<string, AbortController>();
  private closed = false;

  constructor(private readonly opts: DeploymentsOptions) {
    this.store = new DeploymentStore(opts.database);
  }

  async create(input: CreateDeploymentInput, actor: Viewer): Promise<DeploymentRecord> {
    if ((input.taskId === undefined) === (input.model === undefined))
      throw new FieldError('taskId', 'give either taskId or model, not both');
    const adapters: DeploymentAdapter[] = [];
    let model = input.model ?? '';
    if (input.taskId !== undefined) {
      const task = await this.opts.getTask(input.taskId, actor);
      adapters.push(adapterOf(task, 'taskId'));
      model = task.spec.model;
    }
    for (const [i, id] of (input.adapters ?? []).entries()) {
      const task = await this.opts.getTask(id, actor);
      if (task.spec.model !== model) throw new FieldError(`adapters.${i}`, `task ${id} trained ${task.spec.model}, not ${model}`);
      if (!adapters.some((a) => a.name === id)) adapters.push(adapterOf(task, `adapters.${i}`));
    }
    const spec: DeploymentSpec = {
      model,
      taskId: input.taskId ?? null,
      adapters,
      gpus: input.gpus ?? 1,
      gpuMemoryUtilization: input.gpuMemoryUtilization ?? defaultGpuMemoryUtilization(parseParamsB(model)),
      maxModelLen: input.maxModelLen ?? null,
      port: input.port ?? null,
      onTrainingDemand: input.onTrainingDemand ?? 'sleep',
      ...(input.merge ? { merge: true } : {}),
    };
    if (input.priority !== undefined) {
      const value = this.opts.priorityValue(input.priority);
      if (value === undefined) throw new FieldError('priority', `no priority class named ${input.priority}`);
      spec.priority = { name: input.priority, value };
    }
    const id = `dep-${Date.now().toString(36)}${crypto.randomUUID().replace(/-/g, '').slice(0, 10)}`;
    // Its memory, checked against what is free on the devices and taken under the queue lock
    // (as the scheduler places tasks), in the transaction that creates it.
    let record: DeploymentRecord;
    try {
      record = await this.store.place(
        id,
        [{ type: 'create', deploymentId: id, spec }],
        (devices) => this.placement(devices, spec),
        actor.user,
      );
    } catch (err) {
      if (err instanceof DeploymentPlacementError) throw new FieldError(spec.gpus > 1 ? 'gpus' : 'gpuMemoryUtilization', err.reason);
      throw err;
    }
    this.startLaunch(record);
    return record;
  }

  private placement(devices: Parameters<typeof toDeviceViews>[0], spec: Pick<DeploymentSpec, 'gpus' | 'gpuMemoryUtilization'>) {
    return placeDeployment(toDeviceViews(devices, this.opts.conditions()), spec);
  }

  /** PIDs of the deployments' servers and their children (their GPU memory is ours, not another program's). */
  ourPids(): Set<number> {
    const pids = new Set<number>();
    for (const pid of this.serverPids) for (const p of processTree(pid)) pids.add(p);
    return pids;
  }
  private serverPids = new Set<number>();

  /**
   * What queue.get says of deployments, from one read of the live ones: the device holders among
   * `holderIds` that are deployments, named by what they serve, and why each queued task a
   * deployment holds up waits (HELD_BY_DEPLOYMENT) on the devices and queue given.
   */
  async inQueue(
    holderIds: readonly string[],
    devices: readonly DeviceView[],
    queue: readonly QueuedTaskView[],
  ): Promise<{ holders: Map<string, DeploymentHolder>; held: Map<string, WaitReason> }> {
    const live = await listLiveDeployments(this.opts.database.db);
    if (!live.length) return { holders: new Map(), held: new Map() };
    const holding = new Set(holderIds);
    const holders = new Map(
      live
        .filter((r) => holding.has(r.record.id))
        .map((r): [string, DeploymentHolder] => [
          r.record.id,
          { id: r.record.id, owner: r.owner, serves: r.record.servedModels.length ? r.record.servedModels : [r.record.spec.model] },
        ]),
    );
    const held = arbitrate({ devices, queue, deployments: live.map((r) => deploymentView(r.record)), now: Date.now() }).held;
    return { holders, held };
  }

  async get(id: string, viewer: Viewer): Promise<DeploymentRecord> {
    const row = await this.store.get(id);
    if (!row || row.record.deleted || (!viewer.admin && row.owner !== viewer.user)) throw new DeploymentNotFoundError(id);
    return row.record;
  }

  async list(viewer: Viewer, limit = 100): Promise<DeploymentRecord[]> {
    return (await listDeployments(this.opts.database.db, { owner: ownerScope(viewer) ?? null, limit })).map((r) => r.record);
  }

  /** The SERVING or SLEEPING deployment that serves `model` (a served model name), newest first. */
  async serving(model: string, viewer: Viewer): Promise<DeploymentRecord | null> {
    const live = (await listLiveDeployments(this.opts.database.db)).filter((r) => viewer.admin || r.owner === viewer.user);
    const named = live
      .map((r) => r.record)
      .filter((r) => r.servedModels.includes(model) || r.spec.model === model || r.spec.adapters.some((a) => a.name === model))
      .reverse();
    return named.find((r) => r.status === 'SERVING') ?? named[0] ?? null;
  }

  /**
   * The deployment serving `model` (as `serving`), waiting up to `holdMs` for one that is asleep
   * or starting to serve: looked at again on each change of a deployment in the log, and at least
   * every second. Answers what it found last (not SERVING when the hold ran out), and whether it waited.
   */
  async servingWithin(
    model: string,
    viewer: Viewer,
    holdMs: number,
    signal?: AbortSignal,
  ): Promise<{ deployment: DeploymentRecord | null; held: boolean }> {
    const deadline = Date.now() + holdMs;
    let found = await this.serving(model, viewer);
    let held = false;
    while (found && found.status !== 'SERVING' && !isDeploymentEnded(found.status) && Date.now() < deadline && !signal?.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          off();
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(1000, Math.max(0, deadline - Date.now())));
        const off = this.opts.feed.onEvents((events) => {
          if (events.some((e) => isDeploymentStream(e.streamId))) done();
        });
        signal?.addEventListener('abort', done);
      });
      held = true;
      found = await this.serving(model, viewer);
    }
    return { deployment: found, held };
  }

  /**
   * Loads a COMPLETED task's adapter into a SERVING deployment's server (vLLM's
   * `/v1/load_lora_adapter`, named after the task), then records it (`DeploymentAdapterAdded`):
   * served from then on, and after a restart too.
   */
  async addAdapter(id: string, taskId: string, viewer: Viewer): Promise<DeploymentRecord> {
    const record = await this.runtimeLora(id, viewer, 'addAdapter');
    const adapter = adapterOf(await this.opts.getTask(taskId, viewer), 'taskId');
    if (record.spec.adapters.some((a) => a.name === adapter.name)) throw new FieldError('taskId', `${id} already serves ${adapter.name}`);
    await this.loraCall(record, 'load_lora_adapter', { lora_name: adapter.name, lora_path: adapter.path });
    return this.store.command(id, { type: 'addAdapter', adapter }, viewer.user);
  }

  /** Unloads a task's adapter from a SERVING deployment (`/v1/unload_lora_adapter`), recorded as `DeploymentAdapterRemoved`. */
  async removeAdapter(id: string, taskId: string, viewer: Viewer): Promise<DeploymentRecord> {
    const record = await this.runtimeLora(id, viewer, 'removeAdapter');
    if (!record.spec.adapters.some((a) => a.name === taskId)) throw new FieldError('taskId', `${id} serves no adapter of task ${taskId}`);
    await this.loraCall(record, 'unload_lora_adapter', { lora_name: taskId });
    return this.store.command(id, { type: 'removeAdapter', name: taskId }, viewer.user);
  }

  private async runtimeLora(id: string, viewer: Viewer, what: string): Promise<DeploymentRecord> {
    const record = await this.get(id, viewer);
    if (record.status !== 'SERVING' || !record.server)
      throw new FieldError('id', `cannot ${what}: ${id} is ${record.status}; adapters are loaded into a SERVING deployment`);
    if (record.spec.adapters.length === 0)
      throw new FieldError(
        'id',
        `cannot ${what}: ${id} was started without LoRA (--enable-lora); deploy a task's adapter to serve adapters`,
      );
    if (record.spec.merge)
      throw new FieldError(
        'id',
        `cannot ${what}: ${id} serves its task's adapter merged into the model (no LoRA at serving time); deploy a task without merge to serve adapters`,
      );
    return record;
  }

  private async loraCall(record: DeploymentRecord, route: string, body: Record<string, string>): Promise<void> {
    let res: Response;
    try {
      res = await fetch(`http://${LOOPBACK}:${record.server!.port}/v1/${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(120_000),
      });
    } catch (err) {
      throw new Error(`deployment ${record.id} did not answer /v1/${route}: ${(err as Error).message}`, { cause: err });
    }
    if (!res.ok) {
      const text = (await res.text()).slice(0, 500);
      throw new FieldError('taskId', `vLLM refused /v1/${route} (${res.status}): ${text}`);
    }
  }

  async stop(id: string, viewer: Viewer): Promise<DeploymentRecord> {
    await this.get(id, viewer);
    const record = await this.store.command(id, { type: 'stop', reason: `stopped by ${viewer.user}` }, viewer.user);
    if (record.server && !isDeploymentEnded(record.status)) this.terminate(record);
    return record;
  }

  async delete(id: string, viewer: Viewer): Promise<{ id: string; deleted: true }> {
    await this.get(id, viewer);
    await this.store.command(id, { type: 'delete' }, viewer.user);
    return { id, deleted: true };
  }

  /**
   * Each change of the deployments the caller may see (or of deployment `id`), as its record
   * after the change, from now on. Changes come from the log's tail; several changes of one
   * deployment between two reads arrive as its latest record.
   */
  async *updates(o: { id?: string | undefined; viewer: Viewer; signal?: AbortSignal | undefined }): AsyncGenerator<DeploymentRecord> {
    if (o.id !== undefined) await this.get(o.id, o.viewer);
    const changed = new Set<string>();
    let wake: (() => void) | null = null;
    const off = this.opts.feed.onEvents((events) => {
      for (const e of events) if (isDeploymentStream(e.streamId) && (o.id === undefined || e.streamId === o.id)) changed.add(e.streamId);
      if (changed.size) wake?.();
    });
    try {
      while (!o.signal?.aborted) {
        if (!changed.size) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            o.signal?.addEventListener('abort', () => resolve(), { once: true });
          });
          wake = null;
          continue;
        }
        const ids = [...changed];
        changed.clear();
        for (const id of ids) {
          const row = await this.store.get(id);
          if (row && (o.viewer.admin || row.owner === o.viewer.user)) yield row.record;
        }
      }
    } finally {
      off();
    }
  }

  /**
   * After a start: watch again the servers of deployments still live in the log. One placed but
   * not launched (the service stopped in between) is launched; one waiting for devices is placed
   * by arbitration; then arbitration runs on every change of the log and on a timer.
   */
  async recover(): Promise<void> {
    for (const { record } of await listLiveDeployments(this.opts.database.db)) {
      if (record.server) this.watch(record.id);
      else if (record.holding && record.status === 'STARTING') this.startLaunch(record);
    }
    this.opts.feed.onEvents(() => this.arbitrateSoon());
    this.arbiterTimer = setInterval(() => this.arbitrateSoon(), Math.max(250, this.opts.pollMs));
    this.arbiterTimer.unref();
    this.arbitrateSoon();
  }
  private arbiterTimer: NodeJS.Timeout | null = null;

  /** Stops watching; the servers keep running (they are re-attached at the next start). */
  close(): void {
    this.closed = true;
    if (this.arbiterTimer) clearInterval(this.arbiterTimer);
    for (const c of this.watching.values()) c.abort();
    this.watching.clear();
  }

  private arbitrating = false;
  private arbitrateAgain = false;
  private readonly launching = new Set<string>();

  /** Run arbitration now, or once more after the run in progress (never two at once). */
  arbitrateSoon(): void {
    if (this.closed) return;
    if (this.arbitrating) {
      this.arbitrateAgain = true;
      return;
    }
    this.arbitrating = true;
    void (async () => {
      try {
        do {
          this.arbitrateAgain = false;
          await this.arbitrateOnce();
        } while (this.arbitrateAgain && !this.closed);
      } catch (err) {
        this.opts.log.warn(`deployment arbitration: ${errorText(err)}`);
      } finally {
        this.arbitrating = false;
      }
    })();
  }

  /**
   * One round: the decisions of the pure `arbitrate` (packages/domain/src/deployment-arbitration.ts)
   * carried out: deployments put to sleep (confirmed by /is_sleeping) or stopped for the training
   * task they give way to, a sleeping one's memory recorded released once nvidia-smi shows it,
   * sleeping ones woken and stopped ones placed again once their devices are free.
   */
  private async arbitrateOnce(): Promise<void> {
    const db = this.opts.database.db;
    const live = (await listLiveDeployments(db)).map((r) => r.record);
    this.serverPids = new Set(live.flatMap((r) => (r.server ? [r.server.pid] : [])));
    if (!live.length) return;
    const [rows, queued] = await Promise.all([listDevicesWithHolders(db), listQueue(db, 200)]);
    const devices = toDeviceViews(rows, this.opts.conditions());
    const a = arbitrate({ devices, queue: fifoOrder(queued.map(queuedView)), deployments: live.map(deploymentView), now: Date.now() });
    const byId = new Map(live.map((r) => [r.id, r]));
    for (const y of a.yields) {
      const r = byId.get(y.deploymentId)!;
      let after: DeploymentRecord;
      try {
        after = await this.store.command(r.id, { type: 'yield', yielding: y.yielding }, 'scheduler');
      } catch (err) {
        // It changed meanwhile (stopped, died): the next round decides again.
        this.opts.log.warn(`deployment ${r.id}: could not give way: ${errorText(err)}`);
        continue;
      }
      this.opts.log.info(`deployment ${r.id}: ${y.yielding.message}`);
      byId.set(r.id, after);
      if (y.yielding.mode === 'stop') this.terminate(after);
    }
    for (const r of byId.values()) {
      if (r.stopReason !== null || !r.server) continue;
      // Giving way by sleeping: ask vLLM (level 1), confirmed by /is_sleeping.
      if (r.status === 'SERVING' && r.yielding?.mode === 'sleep') {
        const base = `http://127.0.0.1:${r.server.port}`;
        if (await askSleep(base)) byId.set(r.id, await this.store.command(r.id, { type: 'recordSleep', level: 1 }, 'service'));
        else {
          this.opts.log.warn(`deployment ${r.id}: vLLM did not confirm sleeping; asked again at the next round`);
          continue;
        }
      }
      const now = byId.get(r.id)!;
      if (now.status === 'SLEEPING' && now.holding) {
        const seen = await this.observe(now);
        if (seen.released) {
          await this.store.command(r.id, { type: 'recordRelease', observed: seen.observed }, 'service');
          this.opts.log.info(`deployment ${r.id}: memory released (${seen.observed})`);
          this.opts.onDevicesFreed();
        }
      }
    }
    for (const id of a.wakes) {
      const r = byId.get(id)!;
      try {
        await this.store.place(
          id,
          [],
          (rows) =>
            reclaimFits(
              toDeviceViews(rows, this.opts.conditions()),
              deploymentView(r),
              r.devices.map((d) => d.deviceId),
            )
              ? { holds: [] }
              : { reason: 'its devices are taken' },
          'scheduler',
          true,
        );
      } catch (err) {
        if (err instanceof DeploymentPlacementError) continue;
        throw err;
      }
      if (await askWake(`http://127.0.0.1:${r.server!.port}`)) {
        await this.store.command(id, { type: 'recordWake' }, 'service');
        this.opts.log.info(`deployment ${id}: woken, serving again`);
      } else this.opts.log.warn(`deployment ${id}: vLLM did not confirm waking; asked again at the next round`);
    }
    for (const id of a.places) {
      const r = byId.get(id)!;
      try {
        const placed = await this.store.place(id, [], (rows) => this.placement(rows, r.spec), 'scheduler');
        this.startLaunch(placed);
      } catch (err) {
        if (!(err instanceof DeploymentPlacementError)) throw err;
      }
    }
    // A SLEEPING deployment asked to wake whose reclaim went through but /wake_up did not: ask again.
    for (const r of byId.values())
      if (
        r.status === 'SLEEPING' &&
        r.holding &&
        r.stopReason === null &&
        r.server &&
        !r.yielding &&
        (await askWake(`http://127.0.0.1:${r.server.port}`))
      )
        await this.store.command(r.id, { type: 'recordWake' }, 'service');
  }

  /** What nvidia-smi shows of a sleeping deployment's memory on its devices (no nvidia-smi: its /is_sleeping is all there is). */
  private async observe(r: DeploymentRecord): Promise<{ released: boolean; observed: string }> {
    const gpu = await this.opts.gpuNow();
    if (!gpu || !gpu.available || !gpu.devices.length)
      return { released: true, observed: 'no nvidia-smi reading on this host: released as vLLM confirmed sleeping (/is_sleeping)' };
    const mine = new Set(processTree(r.server!.pid));
    const seen = new Map<string, { usedByItMb: number | null; deviceUsedMb: number | null; othersMb: number }>();
    for (const h of r.devices) {
      const g = gpu.devices.find((d) => d.id === h.gpuIndex);
      if (!g) continue;
      const inst = g.migMode ? g.instances.find((i) => i.uuid === h.uuid) : undefined;
      const procs = inst ? inst.processes : g.processes;
      const usedGb = inst ? inst.memoryUsedGb : g.memoryUsedGb;
      const itGb = procs.filter((p) => mine.has(p.pid)).reduce((n, p) => n + p.memoryUsedGb, 0);
      const othersGb = procs.filter((p) => !mine.has(p.pid)).reduce((n, p) => n + p.memoryUsedGb, 0);
      const listed = procs.some((p) => mine.has(p.pid) && p.memoryUsedGb > 0);
      seen.set(h.deviceId, {
        usedByItMb: listed ? Math.round(itGb * 1024) : null,
        deviceUsedMb: Math.round(usedGb * 1024),
        othersMb: Math.round(othersGb * 1024),
      });
    }
    return memoryReleased(r.devices, seen);
  }

  /** Its server ended: its devices are free for the queue; one to start again is placed by arbitration. */
  private afterExit(after: DeploymentRecord): void {
    if (after.status === 'STARTING')
      this.opts.log.warn(
        `deployment ${after.id}: ${after.yielding?.mode === 'stop' && after.restarts === 0 ? after.yielding.message : (after.error ?? 'restarting')}`,
      );
    this.opts.onDevicesFreed();
    this.arbitrateSoon();
  }

  private startLaunch(record: DeploymentRecord): void {
    if (this.closed || this.launching.has(record.id)) return;
    this.launching.add(record.id);
    void this.launch(record)
      .catch((err: Error) => this.opts.log.warn(`deployment ${record.id}: ${errorText(err)}`))
      .finally(() => this.launching.delete(record.id));
  }

  private terminate(record: DeploymentRecord): void {
    const server = record.server!;
    if (!isSameProcessAlive(server.pid, server.startTime)) return;
    signalGroup(server.pid, 'SIGTERM');
    setTimeout(() => {
      if (isSameProcessAlive(server.pid, server.startTime)) signalGroup(server.pid, 'SIGKILL');
    }, this.opts.killGraceMs).unref();
  }

  private async launch(record: DeploymentRecord): Promise<void> {
    const { spec, id } = record;
    // One run folder per server started (a restart must not read the last one's exit).
    const runDir = join(this.opts.runsDir, 'deployments', id, `v${record.version}`);
    const port = spec.port ?? (await freePort());
    // The devices it was placed on (nvidia-smi's indices; CUDA_DEVICE_ORDER=PCI_BUS_ID).
    const devices = record.devices.map((d) => d.gpuIndex);
    const served = spec.merge ? await this.merged(record) : { model: spec.model, loras: spec.adapters };
    if (!served) return;
    const argv = [
      'vllm',
      ...vllmServeArgv({
        model: served.model,
        host: LOOPBACK,
        port,
        gpuMemoryUtilization: spec.gpuMemoryUtilization,
        maxModelLen: spec.maxModelLen,
        tensorParallelSize: spec.gpus,
        loras: served.loras.map((a) => ({ name: a.name, path: a.path })),
        ...('servedModelName' in served ? { servedModelName: served.servedModelName } : {}),
      }),
    ];
    const shepherd = await launchShepherd({ runDir, argv, env: { ...this.opts.env(), ...vllmServeEnv(devices) }, cwd: runDir });
    const info = await waitForTrainerInfo(runDir, SPAWN_TIMEOUT_MS, { shepherdGone: shepherd.gone });
    if ('error' in info) {
      await this.store.command(id, { type: 'fail', message: `the vLLM server did not start: ${info.error}` }, 'service');
      return;
    }
    const after = await this.store.command(
      id,
      { type: 'recordLaunch', server: { pid: info.pid, startTime: info.startTime, runDir, port, devices } },
      'service',
    );
    // A stop that came while it was being launched: the server exists now, end it.
    if (after.stopReason !== null) this.terminate(after);
    this.serverPids.add(info.pid);
    this.watch(id);
  }

  /**
   * A merged deployment's model: its task's adapter merged into the base (runMerge), served under
   * the task's name. Null when there is nothing to launch: the merge failed (the deployment is
   * FAILED, saying why) or the deployment was stopped meanwhile.
   */
  private async merged(record: DeploymentRecord): Promise<{ model: string; loras: []; servedModelName: string } | null> {
    const { id, spec } = record;
    const adapter = spec.adapters[0]!;
    const { runDir, out } = mergePaths(this.opts.runsDir, id);
    const wanted = async () => {
      const row = await this.store.get(id);
      return !this.closed && row !== null && !isDeploymentEnded(row.record.status) && row.record.stopReason === null;
    };
    const outcome = await runMerge({
      argv: this.opts.merge.argv,
      cwd: this.opts.merge.cwd,
      env: this.opts.env(),
      runDir,
      base: spec.model,
      adapter: adapter.path,
      out,
      pollMs: Math.max(100, this.opts.pollMs),
      log: { info: (m) => this.opts.log.info(`deployment ${id}: ${m}`) },
      stillWanted: wanted,
    });
    if (outcome.ok) return (await wanted()) ? { model: out, loras: [], servedModelName: adapter.name } : null;
    if (await wanted()) await this.store.command(id, { type: 'fail', message: outcome.message }, 'service');
    return null;
  }

  /** When an exit is seen and how long serving counts as stable, for recordExit. */
  private stable(): { now: string; stableMs?: number } {
    return { now: new Date().toISOString(), ...(this.opts.stableMs !== undefined ? { stableMs: this.opts.stableMs } : {}) };
  }

  private watch(id: string): void {
    if (this.closed || this.watching.has(id)) return;
    const control = new AbortController();
    this.watching.set(id, control);
    void this.watchLoop(id, control.signal)
      .catch((err: Error) => this.opts.log.warn(`deployment ${id}: watch ended: ${errorText(err)}`))
      .finally(() => {
        if (this.watching.get(id) === control) this.watching.delete(id);
      });
  }

  private async watchLoop(id: string, signal: AbortSignal): Promise<void> {
    const since = Date.now();
    let goneSince: number | undefined;
    while (!signal.aborted) {
      const row = await this.store.get(id);
      if (!row || isDeploymentEnded(row.record.status) || !row.record.server) return;
      const { server, status } = row.record;
      const exit = await readExit(server.runDir);
      if (exit) {
        const after = await this.store.command(
          id,
          { type: 'recordExit', exitCode: exit.code, signal: exit.signal, ...(exit.error ? { detail: exit.error } : {}), ...this.stable() },
          'service',
        );
        this.afterExit(after);
        return;
      }
      if (server.startTime && !isSameProcessAlive(server.pid, server.startTime) && (goneSince ??= Date.now()) < Date.now() - 2000) {
        // Gone without an exit.json (its shepherd writes one within moments of the exit): the
        // shepherd went too (a reboot, a kill of the group).
        const after = await this.store.command(
          id,
          {
            type: 'recordExit',
            exitCode: null,
            signal: null,
            detail: 'the server process is gone and left no exit record',
            ...this.stable(),
          },
          'service',
        );
        this.afterExit(after);
        return;
      }
      if (status === 'STARTING' && row.record.stopReason === null) {
        const base = `http://${LOOPBACK}:${server.port}`;
        const served = await servedModels(base);
        if (served) {
          await this.store.command(id, { type: 'markServing', endpoint: `${base}/v1`, servedModels: served }, 'service');
        } else if (Date.now() - since > START_TIMEOUT_MS) {
          await this.store.command(id, { type: 'stop', reason: 'start timeout' }, 'service');
          this.terminate(row.record);
          await this.store
            .command(id, { type: 'fail', message: `the vLLM server did not answer /health within ${START_TIMEOUT_MS / 1000} s` }, 'service')
            .catch(() => {});
          return;
        }
      }
      await sleep(this.opts.pollMs, signal);
    }
  }
}

/** Ask vLLM to sleep (level 1: weights to CPU memory, KV cache dropped); true once /is_sleeping confirms it. */
async function askSleep(base: string): Promise<boolean> {
  try {
    const r = await fetch(`${base}/sleep?level=1`, { method: 'POST', signal: AbortSignal.timeout(120_000) });
    if (!r.ok) return false;
    return (await isSleeping(base)) === true;
  } catch {
    return false;
  }
}

/** Ask vLLM to wake up; true once /is_sleeping says it no longer sleeps. */
async function askWake(base: string): Promise<boolean> {
  try {
    const r = await fetch(`${base}/wake_up`, { method: 'POST', signal: AbortSignal.timeout(120_000) });
    if (!r.ok) return false;
    return (await isSleeping(base)) === false;
  } catch {
    return false;
  }
}

async function isSleeping(base: string): Promise<boolean | null> {
  try {
    const r = await fetch(`${base}/is_sleeping`, { signal: AbortSignal.timeout(5000) });
    if (!r.ok) return null;
    const body = (await r.json()) as { is_sleeping?: unknown };
    return typeof body.is_sleeping === 'boolean' ? body.is_sleeping : null;
  } catch {
    return null;
  }
}

/** A process and its descendants (from /proc; vLLM's engine and workers are its children). */
function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  try {
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        const list = children.get(ppid) ?? [];
        list.push(Number(name));
        children.set(ppid, list);
      } catch {
        // gone meanwhile
      }
    }
  } catch {
    return [root];
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]!) ?? []));
  return out;
}

/** The model ids the server lists once /health answers, else null. */
async function servedModels(base: string): Promise<string[] | null> {
  try {
    const health = await fetch(`${base}/health`, { signal: AbortSignal.timeout(2000) });
    if (!health.ok) return null;
    const models = await fetch(`${base}/v1/models`, { signal: AbortSignal.timeout(2000) });
    if (!models.ok) return null;
    const body = (await models.json()) as { data?: { id?: unknown }[] };
    const ids = (body.data ?? []).map((m) => m.id).filter((x): x is string => typeof x === 'string');
    return ids.length ? ids : null;
  } catch {
    return null;
  }
}
