// Service verbs: queue, gpu, health.
import type { Command } from 'commander';
import type { Ctx } from '../cli';
import { EXIT } from '../errors';
import { progressText, reasonText, requestText, table, time, type Column, type QueueView } from '../format';
import { out, printJson } from '../io';

type Json = { json?: boolean };

type Device = QueueView['devices'][number];
type Holder = Device['holders'][number];
/** One line of the devices table: a device with one of its holders (none when free), the device's cells on its first line only. */
type DeviceRow = { device: Device; holder: Holder | null; first: boolean };

const OTHERS = { task: "(another user's task)", deployment: "(another user's deployment)" } as const;

/** The devices' lines; other users' tasks and deployments (hidden from a caller who is not an admin) by their memory only. */
function deviceRows(q: QueueView): DeviceRow[] {
  return q.devices.flatMap((device): DeviceRow[] => {
    const others = (q.hidden?.holders ?? [])
      .filter((h) => h.deviceId === device.id)
      .map((h): Holder => ({
        taskId: OTHERS[h.kind],
        memoryGb: h.memoryGb,
        exclusive: h.exclusive,
        endsBy: h.endsBy,
        task: null,
        deployment: null,
      }));
    const holders = [...device.holders, ...others];
    return holders.length ? holders.map((holder, i) => ({ device, holder, first: i === 0 })) : [{ device, holder: null, first: true }];
  });
}

const gbOrUnknown = (x: number) => (x > 0 ? `${x} GB` : '?');

const DEVICE_COLUMNS: Column<DeviceRow>[] = [
  { header: 'DEVICE', get: (r) => (r.first ? r.device.id + (r.device.migProfile ? ` (${r.device.migProfile})` : '') : '') },
  { header: 'NAME', get: (r) => (r.first ? r.device.name : ''), max: 32 },
  { header: 'MEMORY', get: (r) => (r.first ? gbOrUnknown(r.device.memoryGb) : ''), align: 'right' },
  { header: 'OTHER PROGRAMS', get: (r) => (r.first ? `${r.device.externalMemoryGb} GB` : ''), align: 'right' },
  {
    header: 'TASK',
    get: (r) =>
      r.holder?.deployment
        ? `${r.holder.taskId} (deployment: ${r.holder.deployment.serves.join(', ')})`
        : (r.holder?.taskId ?? (!r.device.present ? '(absent)' : r.device.blockedReason ? '(blocked)' : '(free)')),
  },
  {
    header: 'HOLDS',
    get: (r) =>
      !r.holder
        ? '-'
        : r.holder.exclusive
          ? `whole${r.holder.memoryGb > 0 ? ` (${r.holder.memoryGb} GB)` : ''}`
          : `${r.holder.memoryGb} GB shared`,
  },
  { header: 'TASK NAME', get: (r) => r.holder?.task?.spec.name ?? '-', max: 30 },
  { header: 'STATUS', get: (r) => r.holder?.task?.status ?? '-' },
  { header: 'PROGRESS', get: (r) => (r.holder?.task ? progressText(r.holder.task.progress) : '-') },
];

export function registerInfoCommands(program: Command, ctx: () => Ctx): void {
  program
    .command('queue')
    .description('the devices with the tasks holding them, and the queued tasks in order with why each waits')
    .option('--json', 'print { policy, devices, queued, reservation, queuedCount, warning } as JSON')
    .action(async (opts: Json) => {
      const q = await (await ctx().client()).queue.get.query();
      if (opts.json) return printJson(q);
      out(`devices (${q.devices.length}, policy ${q.policy}):`);
      out(table(deviceRows(q), DEVICE_COLUMNS));
      for (const d of q.devices) {
        if (!d.present) out(`${d.id} absent: ${d.blockedReason ?? 'no longer in the inventory.'} It takes no new work.`);
        else if (d.blockedReason) out(`${d.id} blocked: ${d.blockedReason}`);
      }
      out('');
      const othersQueued = q.hidden?.queuedPositions ?? [];
      if (!q.queuedCount) out('queue: empty');
      else {
        out(`queue (${q.queuedCount}):`);
        if (othersQueued.length) out(`places ${othersQueued.join(', ')}: other users' tasks`);
        if (q.queued.length)
          out(
            table(q.queued, [
              { header: 'POS', get: (e) => String(e.position), align: 'right' },
              { header: 'ID', get: (e) => e.task.id },
              { header: 'NAME', get: (e) => e.task.spec.name, max: 40 },
              { header: 'OWNER', get: (e) => e.task.spec.owner },
              { header: 'REQUEST', get: (e) => requestText(e.task.spec.resources) },
              { header: 'QUEUED', get: (e) => time(e.task.queuedAt) },
              { header: 'WHY IT WAITS', get: (e) => reasonText(e.reason) },
            ]),
          );
        const more = q.queuedCount - q.queued.length - othersQueued.length;
        if (more > 0) out(`… and ${more} more`);
      }
      const reservation = q.reservation ?? (q.hidden?.reservation ? { ...q.hidden.reservation, taskId: null } : null);
      if (reservation) {
        const r = reservation;
        out(
          `\nreservation: ${r.taskId ? `task ${r.taskId}` : "another user's task"} starts on ${r.deviceIds.join(', ')} by ${time(r.startAt)} at the latest (when running tasks reach their timeouts)`,
        );
      }
      if (q.warning) out(`\nwarning: ${q.warning}`);
    });

  program
    .command('gpu')
    .description('GPUs, their memory, the programs using them, and which model size fits')
    .option('--json', 'print the GPU report as JSON')
    .action(async (opts: Json) => {
      const g = await (await ctx().client()).system.gpuInfo.query();
      if (opts.json) return printJson(g);
      if (!g.available) {
        out('no usable GPU');
        out(g.recommendation);
        if (g.error) out(`detail: ${g.error}`);
        return;
      }
      // A GPU in MIG mode, then its instances (each a device of its own) under it.
      const rows = g.devices.flatMap((d) => [
        { ...d, gpu: String(d.id), name: d.migMode ? `${d.name} (MIG mode)` : d.name },
        ...d.instances.map((i) => ({ ...i, gpu: `${d.id}/mig${i.id}`, name: `  MIG ${i.profile}`, utilization: null })),
      ]);
      out(
        table(rows, [
          { header: 'GPU', get: (d) => d.gpu, align: 'right' },
          { header: 'NAME', get: (d) => d.name },
          { header: 'MEMORY USED/TOTAL', get: (d) => `${d.memoryUsedGb}/${d.memoryGb} GB` },
          { header: 'EXTERNAL', get: (d) => `${d.externalMemoryGb} GB` },
          { header: 'UTIL', get: (d) => (d.utilization === null ? '-' : `${d.utilization}%`), align: 'right' },
        ]),
      );
      const procs = rows.flatMap((d) => d.processes.map((p) => ({ ...p, gpu: d.gpu })));
      out('');
      if (!procs.length) out('processes: none');
      else {
        out('processes:');
        out(
          table(procs, [
            { header: 'GPU', get: (p) => p.gpu, align: 'right' },
            { header: 'PID', get: (p) => String(p.pid), align: 'right' },
            { header: 'NAME', get: (p) => p.name, max: 50 },
            { header: 'MEMORY', get: (p) => `${p.memoryUsedGb} GB`, align: 'right' },
            { header: 'WHOSE', get: (p) => (p.ours ? 'trainyard' : 'external') },
          ]),
        );
      }
      out('');
      out(`recommendation: ${g.recommendation}`);
      if (g.error) out(`note: ${g.error}`);
    });

  program
    .command('health')
    .description("the service's health: database, storage, version; exit 1 when unhealthy")
    .option('--json', 'print the health report as JSON')
    .action(async (opts: Json) => {
      const c = ctx();
      const h = await (await c.client()).system.health.query();
      if (!h.ok) c.exit(EXIT.FAILED);
      if (opts.json) return printJson(h);
      out(`Trainyard ${h.version} at ${c.url}: ${h.ok ? 'ok' : 'UNHEALTHY'}`);
      // Where things live is shown to an admin only (the service leaves it out for others).
      out(`storage:          ${h.storage}${h.detail ? ` (${h.detail.location})` : ''}`);
      out(`database:         ${h.database}`);
      if (h.detail) out(`instance:         ${h.detail.instance}`);
      out(`active trainers:  ${h.activeTrainers}`);
      if (h.error) out(`error:            ${h.error}`);
    });
}
