// Deployments at the edge: the operations the API offers (create, get, list, stop, delete) and
// the IO that carries out the lifecycle's decisions. A deployment's vLLM server runs under the
// shepherd like a trainer (launch.ts: detached, its output and exit in a run folder), so it
// outlives the service and is watched again after a restart (`recover`). The watch reads the
// run folder's exit.json (the server ended: STOPPED when a stop was asked for, else FAILED),
// and while STARTING asks the server's /health and /v1/models until both answer (SERVING, with
// the endpoint and the served model names) or the start timeout passes (FAILED, killed).
import { join } from 'node:path';
import { createServer } from 'node:net';
import {
  defaultGpuMemoryUtilization,
  isDeploymentEnded,
  isDeploymentStream,
  type DeploymentAdapter,
  type DeploymentRecord,
  type DeploymentSpec,
  type TaskRecord,
} from '@trainyard/domain';
import { DeploymentStore, listDeployments, listLiveDeployments, type Database } from '@trainyard/store';
import { parseParamsB } from '@trainyard/catalogue';
import { DeploymentNotFoundError, FieldError } from '../field-error';
import { ownerScope, type Viewer } from '../visibility';
import { launchShepherd, waitForTrainerInfo } from '../trainer/launch';
import { isSameProcessAlive, signalGroup } from '../trainer/proc';
import { readExit } from '../trainer/run-folder';
import { vllmServeArgv, vllmServeEnv } from './vllm-argv';

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
    };
    const id = `dep-${Date.now().toString(36)}${crypto.randomUUID().replace(/-/g, '').slice(0, 10)}`;
    const record = await this.store.command(id, { type: 'create', deploymentId: id, spec }, actor.user);
    void this.launch(record).catch((err: Error) => this.opts.log.warn(`deployment ${id}: ${err.message}`));
    return record;
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

  /** After a start: watch again the servers of deployments still live in the log. */
  async recover(): Promise<void> {
    for (const { record } of await listLiveDeployments(this.opts.database.db)) {
      if (!record.server) {
        await this.store.command(
          record.id,
          { type: 'fail', message: 'the service stopped before the vLLM server was launched' },
          'service',
        );
        continue;
      }
      this.watch(record.id);
    }
  }

  /** Stops watching; the servers keep running (they are re-attached at the next start). */
  close(): void {
    this.closed = true;
    for (const c of this.watching.values()) c.abort();
    this.watching.clear();
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
    const runDir = join(this.opts.runsDir, 'deployments', id);
    const port = spec.port ?? (await freePort());
    const devices = Array.from({ length: spec.gpus }, (_, i) => i);
    const argv = [
      'vllm',
      ...vllmServeArgv({
        model: spec.model,
        host: LOOPBACK,
        port,
        gpuMemoryUtilization: spec.gpuMemoryUtilization,
        maxModelLen: spec.maxModelLen,
        tensorParallelSize: spec.gpus,
        loras: spec.adapters.map((a) => ({ name: a.name, path: a.path })),
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
    this.watch(id);
  }

  private watch(id: string): void {
    if (this.closed || this.watching.has(id)) return;
    const control = new AbortController();
    this.watching.set(id, control);
    void this.watchLoop(id, control.signal)
      .catch((err: Error) => this.opts.log.warn(`deployment ${id}: watch ended: ${err.message}`))
      .finally(() => {
        if (this.watching.get(id) === control) this.watching.delete(id);
      });
  }

  private async watchLoop(id: string, signal: AbortSignal): Promise<void> {
    const since = Date.now();
    while (!signal.aborted) {
      const row = await this.store.get(id);
      if (!row || isDeploymentEnded(row.record.status) || !row.record.server) return;
      const { server, status } = row.record;
      const exit = await readExit(server.runDir);
      if (exit) {
        await this.store.command(
          id,
          { type: 'recordExit', exitCode: exit.code, signal: exit.signal, ...(exit.error ? { detail: exit.error } : {}) },
          'service',
        );
        return;
      }
      if (server.startTime && !isSameProcessAlive(server.pid, server.startTime)) {
        // Gone without an exit.json: its shepherd went too (a reboot, a kill of the group).
        await this.store.command(
          id,
          { type: 'recordExit', exitCode: null, signal: null, detail: 'the server process is gone and left no exit record' },
          'service',
        );
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
