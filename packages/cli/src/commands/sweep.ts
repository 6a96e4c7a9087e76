// submit --sweep: the grid as one tasks.createMany call, and a table of the tasks it created.
import type { TaskView } from '@trainyard/client';
import type { Ctx } from '../cli';
import { table } from '../format';
import { err, out, printJson, terminalColumns } from '../io';
import type { CreateInput } from '../parse';
import { expandSweep, parseSweep, sweepValueText } from '../sweep';

export async function submitSweep(
  base: CreateInput,
  grid: string,
  opts: { json?: boolean; quiet?: boolean; idempotencyKey?: string },
  ctx: Ctx,
): Promise<void> {
  const axes = parseSweep(grid);
  const tasks = expandSweep(base, axes);
  const client = await ctx.client();
  const result = await client.tasks.createMany.mutate({
    tasks,
    ...(opts.idempotencyKey !== undefined ? { idempotencyKey: opts.idempotencyKey } : {}),
  });
  if (opts.json) return printJson(result);
  if (opts.quiet) {
    for (const t of result.tasks) out(t.id);
    return;
  }
  out(
    result.created
      ? `submitted ${result.tasks.length} tasks in one call (${axes.map((a) => `${a.key} × ${a.values.length}`).join(', ')})`
      : `these ${result.tasks.length} tasks already exist for idempotency key "${opts.idempotencyKey}": nothing new was submitted`,
  );
  const config = (t: TaskView) => t.spec.config as unknown as Record<string, number | boolean | undefined>;
  out(
    table(
      result.tasks,
      [
        { header: 'ID', get: (t) => t.id },
        { header: 'STATUS', get: (t) => t.status },
        ...axes.map((a) => ({ header: a.key, get: (t: TaskView) => sweepValueText(config(t)[a.key]), align: 'right' as const })),
        { header: 'NAME', get: (t) => t.spec.name, min: 12 },
      ],
      terminalColumns(),
    ),
  );
  for (const w of result.warnings) err(`warning [${w.level}] ${w.code}: ${w.message}`);
}
