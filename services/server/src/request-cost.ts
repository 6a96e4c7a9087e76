// What one HTTP request to the API may ask for at once. A batch carries up to 50 calls; most
// are small reads, but a few procedures read and return much more (events.replay folds a task's
// whole history and answers up to a megabyte; events.list and tasks.logs as much as their
// `limit` asks for). Each call has a cost, and a request may spend REQUEST_BUDGET: a batch of
// ordinary calls never comes near it (50 calls cost 50), the panel's heaviest refresh neither,
// but five replays in one batch are refused as a whole, before any of them runs.
import { TRPCError } from '@trpc/server';
import { eventsListInput, logsInput, metricsInput } from './schemas';

export const REQUEST_BUDGET = 100;
export const REPLAY_COST = 25;
/** tasks.outputs walks a task's output folder (up to 20,000 entries). */
const OUTPUTS_COST = 4;
/** events.list: one unit per this many events asked for (its default 100 costs 1, its most, 1000, costs 4). */
const EVENTS_PER_UNIT = 250;
/** tasks.logs: one unit per this many lines asked for (its default 500 costs 1, its most, 5000, costs 5). */
const LINES_PER_UNIT = 1000;
/** tasks.createMany: one unit per this many tasks (a sweep of 1,000 costs 10). */
const TASKS_PER_UNIT = 100;
/** tasks.metrics: one unit per this many progress reports asked for (its default 2000 costs 2, its most, 5000, costs 4). */
const POINTS_PER_UNIT = 1250;

/**
 * The cost of one call, from its procedure and the limit it asks for. The limit is read with the
 * procedure's own input schema: input it refuses costs 1, so the caller gets the field error
 * naming the bad limit rather than a refusal of the whole request.
 */
export function callCost(path: string, input: unknown): number {
  switch (path) {
    case 'events.replay':
      return REPLAY_COST;
    case 'tasks.outputs':
      return OUTPUTS_COST;
    case 'events.list': {
      const parsed = eventsListInput.safeParse(input);
      return parsed.success ? Math.ceil(parsed.data.limit / EVENTS_PER_UNIT) : 1;
    }
    case 'tasks.logs': {
      const parsed = logsInput.safeParse(input);
      return parsed.success ? Math.ceil(parsed.data.limit / LINES_PER_UNIT) : 1;
    }
    case 'tasks.metrics': {
      const parsed = metricsInput.safeParse(input);
      return parsed.success ? Math.ceil(parsed.data.limit / POINTS_PER_UNIT) : 1;
    }
    case 'tasks.createMany': {
      // Counted, not parsed: a malformed list costs 1 and gets its field errors from the procedure.
      const tasks = (input as { tasks?: unknown } | null | undefined)?.tasks;
      return Array.isArray(tasks) ? Math.max(1, Math.ceil(tasks.length / TASKS_PER_UNIT)) : 1;
    }
    default:
      return 1;
  }
}

/** Why a request's calls cost more than the budget, or null when they fit. */
export function overBudget(calls: readonly { path: string; input: unknown }[], budget = REQUEST_BUDGET): string | null {
  const costs = calls.map((c) => ({ path: c.path, cost: callCost(c.path, c.input) }));
  const total = costs.reduce((sum, c) => sum + c.cost, 0);
  if (total <= budget) return null;
  const byPath = new Map<string, { n: number; cost: number }>();
  for (const c of costs) {
    const e = byPath.get(c.path) ?? { n: 0, cost: 0 };
    byPath.set(c.path, { n: e.n + 1, cost: e.cost + c.cost });
  }
  const heavy = [...byPath.entries()]
    .filter(([, e]) => e.cost > e.n)
    .map(([path, e]) => `${path} ×${e.n} costs ${e.cost}`)
    .join(', ');
  return (
    `this request asks for too much at once: its ${calls.length} calls cost ${total}${heavy ? ` (${heavy})` : ''}, ` +
    `one request may cost at most ${budget}. Send the expensive calls (events.replay costs ${REPLAY_COST}; events.list and ` +
    `tasks.logs cost more with larger limits) in separate requests, or page with smaller limits.`
  );
}

/** The procedures whose cost depends on their input. */
const INPUT_PRICED = new Set(['events.list', 'tasks.logs', 'tasks.metrics', 'tasks.createMany']);

/** Refuse the whole request (every call in it gets this error) when it is over budget. */
export async function checkRequestCost(calls: readonly { path: string; getRawInput: () => Promise<unknown> }[]): Promise<void> {
  // Only the calls whose cost depends on their input have it read (tRPC reads it once for all).
  const inputs = await Promise.all(calls.map((c) => (INPUT_PRICED.has(c.path) ? c.getRawInput().catch(() => undefined) : undefined)));
  const problem = overBudget(calls.map((c, i) => ({ path: c.path, input: inputs[i] })));
  if (problem) throw new TRPCError({ code: 'TOO_MANY_REQUESTS', message: problem });
}
