// `trainyard quota`: users' limits and standing (quotas.get), and an admin setting them
// (quotas.set): devices at once, GPU-hours per window, highest priority class, fair-share weight.
import type { Command } from 'commander';
import type { Ctx } from '../cli';
import { UsageError } from '../errors';
import { out, printJson } from '../io';

/** A number, or `none` to remove the cap. */
const capArg = (text: string): number | null => {
  if (text === 'none') return null;
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`expected a number or "none", got "${text}"`);
  return n;
};

export function registerQuotaCommands(program: Command, ctx: () => Ctx): void {
  const quota = program.command('quota').description("users' quotas, priority caps and fair-share weights (admins)");
  quota
    .command('list', { isDefault: true })
    .description("each user's limits, GPU-hours used in their window and decayed use (fair share)")
    .option('--json', 'print the list as JSON')
    .action(async (opts: { json?: boolean }) => {
      const list = await (await ctx().client()).quotas.get.query();
      if (opts.json) return printJson(list);
      if (!list.length) return out('no users (add one with `trainyard admin user add NAME`)');
      const cap = (v: number | null, unit = '') => (v === null ? '-' : `${v}${unit}`);
      out('USER            GPUS  GPU-HOURS (USED/CAP, WINDOW)  MAX PRIORITY  WEIGHT  DECAYED USE');
      for (const q of list)
        out(
          `${q.name.padEnd(15)} ${cap(q.maxGpus).padStart(4)}  ${`${q.gpuHoursUsed}/${cap(q.gpuHours)}, ${cap(q.gpuHoursWindowHours, 'h')}`.padEnd(28)}  ${(q.maxPriority ?? '-').padEnd(12)}  ${String(q.weight).padStart(6)}  ${q.usageGpuHours} GPU-h`,
        );
    });
  quota
    .command('set <user>')
    .description('set some of a user\'s limits; "none" removes a cap')
    .option('--max-gpus <n|none>', 'devices at once', capArg)
    .option('--gpu-hours <h|none>', 'GPU-hours per window', capArg)
    .option('--window <hours|none>', 'the GPU-hours window, in hours (default 168)', capArg)
    .option('--max-priority <class|none>', 'the highest priority class they may submit with')
    .option('--weight <w>', 'fair-share weight (default 1)', Number)
    .option('--json', 'print the result as JSON')
    .action(
      async (
        user: string,
        opts: {
          maxGpus?: number | null;
          gpuHours?: number | null;
          window?: number | null;
          maxPriority?: string;
          weight?: number;
          json?: boolean;
        },
      ) => {
        const q = await (
          await ctx().client()
        ).quotas.set.mutate({
          user,
          ...(opts.maxGpus !== undefined ? { maxGpus: opts.maxGpus } : {}),
          ...(opts.gpuHours !== undefined ? { gpuHours: opts.gpuHours } : {}),
          ...(opts.window !== undefined ? { gpuHoursWindowHours: opts.window } : {}),
          ...(opts.maxPriority !== undefined ? { maxPriority: opts.maxPriority === 'none' ? null : opts.maxPriority } : {}),
          ...(opts.weight !== undefined ? { weight: opts.weight } : {}),
        });
        if (opts.json) return printJson(q);
        out(
          `${q.name}: max GPUs ${q.maxGpus ?? '-'}, GPU-hours ${q.gpuHours ?? '-'} per ${q.gpuHoursWindowHours ?? 168} h, max priority ${q.maxPriority ?? '-'}, weight ${q.weight}`,
        );
      },
    );
}
