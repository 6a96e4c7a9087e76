// Projector rebuild: fold the whole log into read models and compare them with the live ones
// (or replace the live ones). The log is the truth; a difference is a bug worth a loud exit.
import { isDeepStrictEqual } from 'node:util';
import { ReadModelFold, type TaskRecord } from '@trainyard/domain';
import type { Conn, Database, Tx } from './database';
import { readAll } from './sql/events';
import { markProjectionCurrent } from './sql/projections';
import { listHolderRows } from './sql/devices';
import { allTaskRecords, clearReadModels, projectTask } from './sql/tasks';
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

export async function compareWithLog(conn: Conn): Promise<{ differences: Difference[]; events: number; tasks: number }> {
  const rebuilt = await rebuildFromLog(conn);
  const live = new Map((await allTaskRecords(conn)).map((r) => [r.id, r]));
  const differences: Difference[] = [];
  for (const [id, r] of rebuilt.tasks) {
    const l = live.get(id);
    if (!l) differences.push({ kind: 'task-missing-live', id, rebuilt: r });
    else if (!isDeepStrictEqual(normalise(l), normalise(r))) {
      const fields = Object.keys({ ...l, ...r }).filter((k) => !isDeepStrictEqual((l as never)[k], (r as never)[k]));
      differences.push({ kind: 'task-differs', id, fields, live: pick(l, fields), rebuilt: pick(r, fields) });
    }
  }
  for (const [id, l] of live) if (!rebuilt.tasks.has(id)) differences.push({ kind: 'task-not-in-log', id, live: l });
  const liveDeployments = await allDeploymentRows(conn);
  for (const id of new Set([...liveDeployments.keys(), ...rebuilt.deployments.keys()])) {
    const l = liveDeployments.get(id);
    const r = rebuilt.deployments.get(id);
    const same =
      l && r && l.owner === r.owner && isDeepStrictEqual(JSON.parse(JSON.stringify(l.record)), JSON.parse(JSON.stringify(r.record)));
    if (!same) differences.push({ kind: 'deployment-differs', id, live: l ?? null, rebuilt: r ?? null });
  }
  const liveHolders = await listHolderRows(conn);
  const rebuiltHolders = [...rebuilt.deviceHolders, ...deploymentHolderRows([...rebuilt.deployments.values()].map((d) => d.record))].sort(
    (a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : a.taskId < b.taskId ? -1 : a.taskId > b.taskId ? 1 : 0),
  );
  if (!isDeepStrictEqual(liveHolders, rebuiltHolders))
    differences.push({ kind: 'holders-differ', id: 'device holders', live: liveHolders, rebuilt: rebuiltHolders });
  return { differences, events: rebuilt.events, tasks: rebuilt.tasks.size };
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
