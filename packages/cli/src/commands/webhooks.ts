// `trainyard webhooks`: where task endings are posted (webhooks.create, list, delete) and how each
// delivery went, attempt by attempt (webhooks.deliveries).
import { Option, type Command } from 'commander';
import type { Ctx } from '../cli';
import { out, printJson, terminalColumns } from '../io';
import { table, time } from '../format';

const ENDINGS = ['task.completed', 'task.failed', 'task.cancelled', 'task.preempted'] as const;
type Ending = (typeof ENDINGS)[number];

export function registerWebhookCommands(program: Command, ctx: () => Ctx): void {
  const hooks = program.command('webhooks').description('task endings posted to URLs, signed (HMAC-SHA256), and how each delivery went');
  hooks
    .command('add <url>')
    .description("post your tasks' endings to URL; prints the signing secret, shown this once")
    .option('--secret <secret>', 'the signing secret (default: one is made up)')
    .addOption(new Option('--event <type...>', 'only these endings (default: all)').choices(ENDINGS))
    .option('--all-users', "every user's tasks, not only yours (admins)")
    .option('--json', 'print the webhook and its secret as JSON')
    .action(async (url: string, opts: { secret?: string; event?: Ending[]; allUsers?: boolean; json?: boolean }) => {
      const made = await (
        await ctx().client()
      ).webhooks.create.mutate({
        url,
        ...(opts.secret !== undefined ? { secret: opts.secret } : {}),
        ...(opts.event ? { events: opts.event } : {}),
        allUsers: opts.allUsers === true,
      });
      if (opts.json) return printJson(made);
      out(
        `webhook ${made.webhook.id}: ${made.webhook.url} (${made.webhook.owner === null ? 'every user' : made.webhook.owner}'s tasks, ${made.webhook.events.join(', ') || 'every ending'})`,
      );
      out(`secret: ${made.secret}`);
      out('keep the secret: it is not shown again. Check x-trainyard-signature (t=…,v1=HMAC-SHA256 of "<t>.<body>") with it.');
    });
  hooks
    .command('ls', { isDefault: true })
    .description('your webhooks (an admin: all)')
    .option('--json', 'print them as JSON')
    .action(async (opts: { json?: boolean }) => {
      const list = await (await ctx().client()).webhooks.list.query();
      if (opts.json) return printJson(list);
      if (!list.length) return out('no webhooks: add one with `trainyard webhooks add URL`');
      out(
        table(
          list,
          [
            { header: 'ID', get: (w) => w.id },
            { header: 'URL', get: (w) => w.url, min: 20 },
            { header: 'TASKS OF', get: (w) => w.owner ?? '(everyone)' },
            { header: 'ENDINGS', get: (w) => w.events.join(',') || 'all', drop: 2 },
            { header: 'CREATED', get: (w) => time(w.createdAt), drop: 1 },
          ],
          terminalColumns(),
        ),
      );
    });
  hooks
    .command('rm <id>')
    .description('delete a webhook; its pending deliveries are dropped')
    .action(async (id: string) => {
      await (await ctx().client()).webhooks.delete.mutate({ id });
      out(`webhook ${id} deleted`);
    });
  hooks
    .command('deliveries')
    .description('deliveries, newest first, with every attempt (status or error, and what was decided)')
    .option('--task <id>', "one task's")
    .option('--webhook <id>', "one webhook's")
    .option('--limit <n>', 'how many (1-500)', (v) => Number(v), 20)
    .option('--json', 'print them as JSON')
    .action(async (opts: { task?: string; webhook?: string; limit: number; json?: boolean }) => {
      const list = await (
        await ctx().client()
      ).webhooks.deliveries.query({
        ...(opts.task !== undefined ? { taskId: opts.task } : {}),
        ...(opts.webhook !== undefined ? { webhookId: opts.webhook } : {}),
        limit: opts.limit,
      });
      if (opts.json) return printJson(list);
      if (!list.length) return out('no deliveries yet');
      for (const d of list) {
        out(
          `${d.id}  ${d.type} of task ${d.taskId} to ${d.webhookId}: ${d.state.toUpperCase()}${d.nextAttemptAt ? `, next attempt ${time(d.nextAttemptAt)}` : ''}`,
        );
        for (const a of d.attempts)
          out(
            `  #${a.attempt} ${time(a.at)}  ${a.status !== null ? `HTTP ${a.status}` : (a.error ?? '')}  ${a.durationMs} ms  ${a.outcome}${a.retryInMs !== null ? ` in ${(a.retryInMs / 1000).toFixed(1)} s` : ''}${a.outcome === 'failed' && a.why ? `: ${a.why}` : ''}`,
          );
      }
    });
}
