// Audit-log verbs: events, replay.
import { InvalidArgumentError, type Command } from 'commander';
import type { RouterInputs, RouterOutputs } from '@trainyard/client';
import type { Ctx } from '../cli';
import { devicesText, duration, gpuHoursText, groundsText, progressText, table, taskDetails, time } from '../format';
import { out, printJson, printJsonLine, terminalColumns } from '../io';
import { intArg, listArg, parseDuration } from '../parse';

type EventView = RouterOutputs['events']['list']['events'][number];
type ReplayPage = RouterOutputs['events']['replay'];
/** Steps per replay page the CLI asks for: the service's most (it also cuts a page at about 1 MB). */
const REPLAY_PAGE = 500;

/** A short, one-line summary of an event's data. */
function eventDetail(e: EventView): string {
  switch (e.type) {
    case 'TaskSubmitted':
      return `${e.data.spec.name} (model ${e.data.spec.model})`;
    case 'TaskAssigned': {
      const why = groundsText(e.data.grounds);
      return `${devicesText(e.data.devices)}, attempt ${e.data.attempt}${why ? `; ${why}` : ''}`;
    }
    case 'TrainerSpawned':
      return `pid ${e.data.pid}`;
    case 'TaskHandedToSlurm':
      return `Slurm job ${e.data.jobId}, attempt ${e.data.attempt}`;
    case 'ProgressRecorded':
      return progressText({ percent: 0, ...e.data }, { percent: false });
    case 'ArtifactRecorded':
      return e.data.path;
    case 'StopRequested':
      return `${e.data.reason}: ${e.data.message}`;
    case 'TaskCompleted':
      return `exit code ${e.data.exitCode}`;
    case 'TaskFailed':
      return `${e.data.reason}: ${e.data.message.split('\n')[0]}`;
    case 'TaskCancelled':
      return e.data.reason ?? '';
    default:
      return '';
  }
}

/**
 * What each ending in the listing cost, by its position: "ran 4m10s, 0.07 GPU-h", from the
 * assignment of the same task earlier in the listing (its devices × the time until the end).
 */
function endingCosts(events: readonly EventView[]): Map<string, string> {
  const assigned = new Map<string, { at: number; devices: number }>();
  const out = new Map<string, string>();
  for (const e of events) {
    if (e.type === 'TaskAssigned') assigned.set(e.streamId, { at: Date.parse(e.recordedAt), devices: e.data.devices.length });
    else if (e.type === 'TaskCompleted' || e.type === 'TaskFailed' || e.type === 'TaskCancelled') {
      const a = assigned.get(e.streamId);
      if (!a) continue;
      const ms = Math.max(0, Date.parse(e.recordedAt) - a.at);
      out.set(e.position, `ran ${duration(ms)}, ${gpuHoursText((a.devices * ms) / 3_600_000)} GPU-h`);
      assigned.delete(e.streamId);
    }
  }
  return out;
}

/**
 * --from/--to: an ISO time, a date alone (the start of that day, local time), or a duration
 * meaning that long ago ("1h" = an hour ago).
 */
export function timeArg(text: string): string {
  const t = text.trim();
  if (/^\d+(?:\.\d+)?(ms|s|m|h|d)/.test(t)) return new Date(Date.now() - parseDuration(t)).toISOString();
  const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(t);
  if (day) {
    const d = new Date(Number(day[1]), Number(day[2]) - 1, Number(day[3]));
    if (d.getFullYear() === Number(day[1]) && d.getMonth() === Number(day[2]) - 1 && d.getDate() === Number(day[3])) return d.toISOString();
    throw new InvalidArgumentError(`"${text}" is not a date: give YYYY-MM-DD, an ISO 8601 time or a duration ago like 1h`);
  }
  return text;
}

export function registerEventCommands(program: Command, ctx: () => Ctx): void {
  program
    .command('events')
    .description('the audit log: every task event, oldest first')
    .option('--task <id>', "only this task's events")
    .option('--type <type...>', 'only these event types (repeat or comma-separate), e.g. TaskFailed', listArg)
    .option('--actor <actor>', 'only events by this actor (a user, "runner", "scheduler", ...)')
    .option('--from <time>', 'from this time: ISO 8601 (2026-01-31T12:00:00Z) or a duration ago (1h)', timeArg)
    .option('--to <time>', 'up to this time: ISO 8601 or a duration ago', timeArg)
    .option('--limit <n>', 'events per page (1-1000)', intArg, 100)
    .option('--cursor <position>', 'start after this log position (the nextCursor of a previous page)')
    .option('--all', 'follow the cursors to list every matching event')
    .option('--json', 'print { events, nextCursor } as JSON')
    .option('--jsonl', 'print one event per line (JSON Lines)')
    .action(
      async (opts: {
        task?: string;
        type?: string[];
        actor?: string;
        from?: string;
        to?: string;
        limit: number;
        cursor?: string;
        all?: boolean;
        json?: boolean;
        jsonl?: boolean;
      }) => {
        const client = await ctx().client();
        const base: RouterInputs['events']['list'] = { limit: opts.limit };
        if (opts.task !== undefined) base.taskId = opts.task;
        if (opts.type !== undefined) base.type = opts.type as never;
        if (opts.actor !== undefined) base.actor = opts.actor;
        if (opts.from !== undefined) base.from = opts.from;
        if (opts.to !== undefined) base.to = opts.to;
        const events: EventView[] = [];
        let cursor: string | null = opts.cursor ?? null;
        for (;;) {
          const page = await client.events.list.query({ ...base, cursor });
          if (opts.jsonl) for (const e of page.events) printJsonLine(e);
          else events.push(...page.events);
          cursor = page.nextCursor;
          if (!opts.all || !cursor) break;
        }
        if (opts.jsonl) return;
        if (opts.json) return printJson({ events, nextCursor: cursor });
        if (!events.length) return out('no events match');
        const costs = endingCosts(events);
        out(
          table(
            events,
            [
              { header: 'POSITION', get: (e) => e.position, align: 'right', drop: 2 },
              { header: 'TIME', get: (e) => time(e.recordedAt) },
              { header: 'TASK', get: (e) => e.streamId, drop: 1 },
              { header: 'TYPE', get: (e) => e.type },
              { header: 'ACTOR', get: (e) => e.metadata.actor, drop: 3 },
              {
                header: 'DETAIL',
                get: (e) => [eventDetail(e), costs.get(e.position)].filter(Boolean).join('; '),
                max: 160,
                min: 12,
              },
            ],
            terminalColumns(),
          ),
        );
        if (cursor) process.stderr.write(`more events: add --all, or --cursor ${cursor} for the next page\n`);
      },
    );

  program
    .command('replay')
    .description("a task's state after each of its events, or at one point in its history")
    .argument('<task>', 'task id')
    .option('--at-position <position>', 'the state after the event at this log position')
    .option('--at-time <time>', 'the state at this time (ISO 8601, or a duration ago like 10m)', timeArg)
    .option('--json', 'print { steps, state, event } as JSON')
    .action(async (taskId: string, opts: { atPosition?: string; atTime?: string; json?: boolean }) => {
      const client = await ctx().client();
      if (opts.atPosition !== undefined || opts.atTime !== undefined) {
        const r = await client.events.replay.query({
          taskId,
          ...(opts.atPosition !== undefined ? { atPosition: opts.atPosition } : {}),
          ...(opts.atTime !== undefined ? { atTime: opts.atTime } : {}),
        });
        if (opts.json) return printJson({ steps: r.steps, state: r.state, event: r.event });
        const at = opts.atPosition !== undefined ? `position ${opts.atPosition}` : time(opts.atTime);
        if (!r.state || !r.event) return out(`task ${taskId} did not exist yet at ${at}`);
        out(`task ${taskId} at ${at}, after ${r.event.type} (position ${r.event.position}, ${time(r.event.recordedAt)}):`);
        out(taskDetails(r.state, null));
        return;
      }
      // The service answers a page at a time (one request each: pages are large).
      const steps: ReplayPage['steps'] = [];
      let last: ReplayPage | null = null;
      for (let after: string | null = null; ;) {
        const page: ReplayPage = await client.events.replay.query({
          taskId,
          ...(after ? { afterPosition: after } : {}),
          limit: REPLAY_PAGE,
        });
        steps.push(...page.steps);
        if (page.steps.length) last = page;
        if (!page.nextCursor) break;
        after = page.nextCursor;
      }
      if (opts.json) return printJson({ steps, state: last?.state ?? null, event: last?.event ?? null });
      out(
        table(steps, [
          { header: 'POSITION', get: (s) => s.event.position, align: 'right' },
          { header: 'TIME', get: (s) => time(s.event.recordedAt) },
          { header: 'EVENT', get: (s) => s.event.type },
          { header: 'STATUS', get: (s) => s.state.status },
          { header: 'PROGRESS', get: (s) => progressText(s.state.progress) },
          { header: 'DETAIL', get: (s) => eventDetail(s.event), max: 120 },
        ]),
      );
    });
}
