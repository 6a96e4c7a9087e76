// Statements on the devices: the inventory configured at start-up and who holds each device.
// Holders are written only by the task projection (tasks.ts), with the task row that takes or
// frees them.
import { and, asc, eq, inArray, notInArray, sql } from 'drizzle-orm';
import type { Device, DeviceHolderRow, TaskRecord } from '@trainyard/domain';
import type { Conn } from '../database';
import { queryRows } from '../driver-query';
import { deviceHolders, devices, tasks } from '../schema';

export interface DeviceRow extends Device {
  /** False when the last inventory did not have it (kept while a task holds it). */
  present: boolean;
}

export interface HolderRow extends DeviceHolderRow {
  /** The holder's deadline (epoch ms), null when it has none yet. */
  endsBy: number | null;
  /** Whose task it is, its priority, when it started, how often it was preempted, whether it is stopping. */
  owner?: string;
  priority?: number;
  startedAt?: number | null;
  preemptions?: number;
  stopping?: boolean;
}

export interface DeviceWithHolders extends DeviceRow {
  holders: HolderRow[];
}

const DEVICES = `SELECT device_id, gpu_index, uuid, name, memory_mb, mig_profile, present FROM devices ORDER BY gpu_index, device_id`;

export async function listDevices(conn: Conn): Promise<DeviceRow[]> {
  const rows = await queryRows<{
    device_id: string;
    gpu_index: number;
    uuid: string | null;
    name: string;
    memory_mb: number;
    mig_profile: string | null;
    present: boolean;
  }>(conn, DEVICES);
  return rows.map((r) => ({
    id: r.device_id,
    gpuIndex: r.gpu_index,
    uuid: r.uuid,
    name: r.name,
    memoryMb: r.memory_mb,
    migProfile: r.mig_profile,
    present: r.present,
  }));
}

/** A holder row's own columns. */
const holderColumns = {
  deviceId: deviceHolders.deviceId,
  taskId: deviceHolders.taskId,
  memoryMb: deviceHolders.memoryMb,
  exclusive: deviceHolders.exclusive,
};

/**
 * Every holder with what the scheduler needs of its task, by device then task. Each holder's task
 * is looked up by its key (a lateral subquery): with a plain join the planner hashes every task
 * row when the tables have no statistics yet (a fresh database, before autovacuum's first
 * analyze), and this read, part of every submission and scheduling pass, grew with the number of
 * tasks ever submitted.
 */
export const HOLDERS_WITH_THEIR_TASKS = `SELECT h.device_id, h.task_id, h.memory_mb, h.exclusive,
  t.deadline_at, t.owner, t.priority, t.started_at, t.preemptions, t.stopping
FROM device_holders h
LEFT JOIN LATERAL (
  SELECT record->>'deadlineAt' AS deadline_at, owner, priority, record->>'startedAt' AS started_at,
    (record->>'preemptions')::int AS preemptions,
    record->'stop' IS NOT NULL AND record->'stop' <> 'null'::jsonb AS stopping
  FROM tasks WHERE tasks.id = h.task_id LIMIT 1
) t ON true
ORDER BY h.device_id, h.task_id`;

interface HolderWithTaskRow {
  device_id: string;
  task_id: string;
  memory_mb: number;
  exclusive: boolean;
  deadline_at: string | null;
  owner: string | null;
  priority: number | null;
  started_at: string | null;
  preemptions: number | null;
  stopping: boolean | null;
}

/** Every device with its holders (and each holder's deadline), in device order; absent ones only while held. */
export async function listDevicesWithHolders(conn: Conn): Promise<DeviceWithHolders[]> {
  const [devs, holders] = await Promise.all([listDevices(conn), queryRows<HolderWithTaskRow>(conn, HOLDERS_WITH_THEIR_TASKS)]);
  const byDevice = new Map<string, HolderRow[]>();
  for (const h of holders) {
    const list = byDevice.get(h.device_id) ?? [];
    list.push({
      deviceId: h.device_id,
      taskId: h.task_id,
      memoryMb: h.memory_mb,
      exclusive: h.exclusive,
      endsBy: h.deadline_at ? Date.parse(h.deadline_at) : null,
      ...(h.owner !== null ? { owner: h.owner } : {}),
      priority: h.priority ?? 0,
      startedAt: h.started_at ? Date.parse(h.started_at) : null,
      preemptions: Number(h.preemptions ?? 0),
      stopping: Boolean(h.stopping),
    });
    byDevice.set(h.device_id, list);
  }
  // A holder of a device the table does not have (an inventory change the log predates) still shows.
  const known = new Set(devs.map((d) => d.id));
  const orphans: DeviceWithHolders[] = [...byDevice.keys()]
    .filter((id) => !known.has(id))
    .map((id) => ({
      id,
      gpuIndex: -1,
      uuid: null,
      name: 'unknown device',
      memoryMb: 0,
      migProfile: null,
      present: false,
      holders: byDevice.get(id)!,
    }));
  // An absent device nobody holds any more is gone for good (the row goes at the next configure).
  const listed = devs.map((d) => ({ ...d, holders: byDevice.get(d.id) ?? [] })).filter((d) => d.present || d.holders.length);
  return [...listed, ...orphans];
}

/** Every holder row, sorted by device then task (to compare with a rebuild). */
export async function listHolderRows(conn: Conn): Promise<DeviceHolderRow[]> {
  return conn.select(holderColumns).from(deviceHolders).orderBy(asc(deviceHolders.deviceId), asc(deviceHolders.taskId));
}

/** The tasks holding a device the inventory no longer has. */
export async function holdersOfAbsentDevices(conn: Conn): Promise<{ taskId: string; deviceId: string; record: TaskRecord | null }[]> {
  // By key, as in holdersWithTheirTasks: a join could hash every task at start-up.
  const task = conn.select({ record: tasks.record }).from(tasks).where(eq(tasks.id, deviceHolders.taskId)).limit(1).as('holder_task');
  const rows = await conn
    .select({ taskId: deviceHolders.taskId, deviceId: deviceHolders.deviceId, record: task.record })
    .from(deviceHolders)
    .leftJoin(devices, eq(devices.deviceId, deviceHolders.deviceId))
    .leftJoinLateral(task, sql`true`)
    .where(sql`${devices.deviceId} IS NULL OR NOT ${devices.present}`);
  return rows.map((r) => ({ ...r, record: r.record ?? null }));
}

/**
 * Make the device table match an inventory: given devices are upserted and present; others go
 * once nobody holds them, and a held one stays, marked absent, until its holder lets go.
 */
export async function configureDevices(conn: Conn, inventory: readonly Device[]): Promise<void> {
  for (const d of inventory) {
    const row = {
      deviceId: d.id,
      gpuIndex: d.gpuIndex,
      uuid: d.uuid,
      name: d.name,
      memoryMb: d.memoryMb,
      migProfile: d.migProfile,
      present: true,
    };
    const { deviceId: _key, ...set } = row;
    await conn.insert(devices).values(row).onConflictDoUpdate({ target: devices.deviceId, set });
  }
  const ids = inventory.map((d) => d.id);
  const gone = ids.length ? notInArray(devices.deviceId, ids) : sql`true`;
  const held = conn.select({ id: deviceHolders.deviceId }).from(deviceHolders);
  await conn.delete(devices).where(and(gone, notInArray(devices.deviceId, held)));
  await conn
    .update(devices)
    .set({ present: false })
    .where(and(gone, inArray(devices.deviceId, held)));
}
