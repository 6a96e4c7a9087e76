// Service verbs: queue, gpu, health.
import type { Command } from 'commander';
import type { Ctx } from '../cli';
import { EXIT } from '../errors';
import { progressText, table, time } from '../format';
import { out, printJson } from '../io';

type Json = { json?: boolean };

export function registerInfoCommands(program: Command, ctx: () => Ctx): void {
  program
    .command('queue')
    .description('GPU slots with their task, and the queued tasks in order')
    .option('--json', 'print { slots, queued, queuedCount, warning } as JSON')
    .action(async (opts: Json) => {
      const q = await (await ctx().client()).queue.get.query();
      if (opts.json) return printJson(q);
      out(`slots (${q.slots.length}):`);
      out(
        table(q.slots, [
          { header: 'SLOT', get: (s) => String(s.slotId), align: 'right' },
          { header: 'GPU', get: (s) => String(s.gpuIndex), align: 'right' },
          { header: 'TASK', get: (s) => s.task?.id ?? (s.blockedReason ? '(blocked)' : '(free)') },
          { header: 'NAME', get: (s) => s.task?.spec.name ?? '-', max: 40 },
          { header: 'STATUS', get: (s) => s.task?.status ?? '-' },
          { header: 'PROGRESS', get: (s) => (s.task ? progressText(s.task.progress) : '-') },
          { header: 'OWNER', get: (s) => s.task?.spec.owner ?? '-' },
        ]),
      );
      for (const s of q.slots) if (s.blockedReason) out(`slot ${s.slotId} blocked: ${s.blockedReason}`);
      out('');
      if (!q.queued.length) out('queue: empty');
      else {
        out(`queue (${q.queuedCount}):`);
        out(
          table(q.queued, [
            { header: 'POS', get: (e) => String(e.position), align: 'right' },
            { header: 'ID', get: (e) => e.task.id },
            { header: 'NAME', get: (e) => e.task.spec.name, max: 40 },
            { header: 'OWNER', get: (e) => e.task.spec.owner },
            { header: 'QUEUED', get: (e) => time(e.task.queuedAt) },
          ]),
        );
        if (q.queuedCount > q.queued.length) out(`… and ${q.queuedCount - q.queued.length} more`);
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
      out(
        table(g.devices, [
          { header: 'GPU', get: (d) => String(d.id), align: 'right' },
          { header: 'NAME', get: (d) => d.name },
          { header: 'MEMORY USED/TOTAL', get: (d) => `${d.memoryUsedGb}/${d.memoryGb} GB` },
          { header: 'EXTERNAL', get: (d) => `${d.externalMemoryGb} GB` },
          { header: 'UTIL', get: (d) => (d.utilization === null ? '-' : `${d.utilization}%`), align: 'right' },
        ]),
      );
      const procs = g.devices.flatMap((d) => d.processes.map((p) => ({ gpu: d.id, ...p })));
      out('');
      if (!procs.length) out('processes: none');
      else {
        out('processes:');
        out(
          table(procs, [
            { header: 'GPU', get: (p) => String(p.gpu), align: 'right' },
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
