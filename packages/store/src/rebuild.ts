// Projector rebuild: fold the whole log into read models and compare them with the live ones
// (or replace the live ones). The log is the truth; a difference is a bug worth a loud exit.
import { isDeepStrictEqual } from 'node:util';
import { isDeploymentStream, ReadModelFold, type DeviceHolderRow, type TaskRecord } from '@trainyard/domain';
import type { Conn, Database, Tx } from './database';
import { readAll, readAllByStream } from './sql/events';
import { markProjectionCurrent } from './sql/projections';
import { listHolderRows } from './sql/devices';
import { clearReadModels, liveTasksNotInLog, loadTasks, projectTask } from './sql/tasks';
import { allDeploymentRows, DeploymentFold, deploymentHolderRows, replaceDeployments } from './deployment-store';

/** Fold every event in position order. Memory grows with the number of tasks, not events. */
export async function rebuildFromLog(conn: Conn) {
  const fold = new ReadModelFold();
  // Deployments share the log on dep- streams; their table (and holder rows) is folded beside.
  const deployments = new DeploymentFold();
  for await (const ev of readAll(conn)) {
    fold.add(ev);
    deployments.add(ev);
  }
  return { ...fold.result(), events: fold.events, lastPositions: fold.lastPositions, deployments: deployments.result() };
}

export interface Difference {
  kind: 'task-missing-live' | 'task-not-in-log' | 'task-differs' | 'holders-differ' | 'deployment-differs';
  id: string;
  live?: unknown;
  rebuilt?: unknown;
  fields?: string[];
}

/**
 * Streams whose rebuilt records are compared with the live ones in one read, and events in one
 * page of the log's read. Small, so that little is alive at a young-generation collection: what
 * survives one is promoted, and over a long log the old generation grows with it (with 500 and
 * 5,000 the peak at 1M events was 1.3 times that at 10k; docs/BENCHMARKS.md, "Rebuild memory").
 */
const COMPARE_BATCH = 100;
const EVENTS_PAGE = 1_000;

/**
 * Fold the log stream by stream and compare each task with its live record, a batch of streams
 * at a time: memory holds one batch, the holders (active tasks) and the deployments, whatever
 * the length of the log (issue 19; folding the whole log first held every task at once).
 */
export async function compareWithLog(conn: Conn): Promise<{ differences: Difference[]; events: number; tasks: number }> {
  const differences: Difference[] = [];
  const deployments = new DeploymentFold();
  const rebuiltHolders: DeviceHolderRow[] = [];
  let events = 0;
  let taskCount = 0;
  let fold: ReadModelFold | null = null;
  let batch = new Map<string, TaskRecord>();
  const compareBatch = async () => {
    const live = await loadTasks(conn, [...batch.keys()]);
    for (const [id, r] of batch) {
      const l = live.get(id);
      if (!l) differences.push({ kind: 'task-missing-live', id, rebuilt: r });
      else if (!isDeepStrictEqual(normalise(l), normalise(r))) {
        const fields = Object.keys({ ...l, ...r }).filter((k) => !isDeepStrictEqual((l as never)[k], (r as never)[k]));
        differences.push({ kind: 'task-differs', id, fields, live: pick(l, fields), rebuilt: pick(r, fields) });
      }
    }
    batch = new Map();
  };
  const endStream = async () => {
    if (!fold) return;
    const result = fold.result();
    events += fold.events;
    for (const [id, r] of result.tasks) batch.set(id, r);
    rebuiltHolders.push(...result.deviceHolders);
    taskCount += result.tasks.size;
    fold = null;
    if (batch.size >= COMPARE_BATCH) await compareBatch();
  };
  let stream: string | null = null;
  for await (const ev of readAllByStream(conn, EVENTS_PAGE)) {
    if (isDeploymentStream(ev.streamId)) {
      deployments.add(ev);
      continue;
    }
    if (ev.streamId !== stream) {
      await endStream();
      stream = ev.streamId;
      fold = new ReadModelFold();
    }
    fold!.add(ev);
  }
  await endStream();
  await compareBatch();
  for (const l of await liveTasksNotInLog(conn)) differences.push({ kind: 'task-not-in-log', id: l.id, live: l });
  const rebuiltDeployments = deployments.result();
  const liveDeployments = await allDeploymentRows(conn);
  for (const id of new Set([...liveDeployments.keys(), ...rebuiltDeployments.keys()])) {
    const l = liveDeployments.get(id);
    const r = rebuiltDeployments.get(id);
    const same =
      l && r && l.owner === r.owner && isDeepStrictEqual(JSON.parse(JSON.stringify(l.record)), JSON.parse(JSON.stringify(r.record)));
    if (!same) differences.push({ kind: 'deployment-differs', id, live: l ?? null, rebuilt: r ?? null });
  }
  const liveHolders = await listHolderRows(conn);
  const allHolders = [...rebuiltHolders, ...deploymentHolderRows([...rebuiltDeployments.values()].map((d) => d.record))].sort((a, b) =>
    a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : a.taskId < b.taskId ? -1 : a.taskId > b.taskId ? 1 : 0,
  );
  if (!isDeepStrictEqual(liveHolders, allHolders))
    differences.push({ kind: 'holders-differ', id: 'device holders', live: liveHolders, rebuilt: allHolders });
  return { differences, events, tasks: taskCount };
}

/** Replace the live read models with the ones folded from the log, in one transaction. */
export async function replaceReadModels(database: Database): Promise<{ events: number; tasks: number }> {
  return database.db.transaction((tx) => replaceReadModelsIn(tx));
}

/** Fold the log and replace the read models with the result, inside the caller's transaction. */
export async function replaceReadModelsIn(tx: Tx): Promise<{ events: number; tasks: number }> {
  const rebuilt = await rebuildFromLog(tx);
  await clearReadModels(tx);
  for (const [id, r] of rebuilt.tasks) await projectTask(tx, null, r, rebuilt.lastPositions.get(id)!);
  await replaceDeployments(tx, rebuilt.deployments);
  await markProjectionCurrent(tx);
  return { events: rebuilt.events, tasks: rebuilt.tasks.size };
}

function normalise(r: TaskRecord): unknown {
  return JSON.parse(JSON.stringify(r));
}

function pick(r: TaskRecord, fields: string[]): Record<string, unknown> {
  return Object.fromEntries(fields.map((f) => [f, (r as never)[f]]));
}
