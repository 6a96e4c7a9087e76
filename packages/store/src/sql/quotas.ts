// Statements on users' quotas, priority caps and fair-share weights (columns of users), and the
// read the scheduler's accounts are computed from: the limits, and the tasks that ran recently.
import { asc, eq } from 'drizzle-orm';
import { ACTIVE_STATUSES, type Run, type UserLimits } from '@trainyard/domain';
import type { Conn } from '../database';
import { queryRows } from '../driver-query';
import { users } from '../schema';

export interface UserQuota extends UserLimits {
  /** The highest priority class the user may submit with (null: any). */
  maxPriority: string | null;
}

const quotaColumns = {
  name: users.name,
  maxGpus: users.maxGpus,
  gpuHours: users.gpuHours,
  gpuHoursWindowHours: users.gpuHoursWindowHours,
  weight: users.weight,
  maxPriority: users.maxPriority,
};

export async function listQuotas(conn: Conn): Promise<UserQuota[]> {
  return conn.select(quotaColumns).from(users).orderBy(asc(users.name));
}

export async function getQuota(conn: Conn, name: string): Promise<UserQuota | null> {
  const [row] = await conn.select(quotaColumns).from(users).where(eq(users.name, name));
  return row ?? null;
}

/** Set some of a user's limits (a field left undefined stays; null removes a cap). Null when there is no such user. */
export async function setQuota(
  conn: Conn,
  name: string,
  set: Partial<Pick<UserQuota, 'maxGpus' | 'gpuHours' | 'gpuHoursWindowHours' | 'weight' | 'maxPriority'>>,
): Promise<UserQuota | null> {
  const values = Object.fromEntries(Object.entries(set).filter(([, v]) => v !== undefined));
  if (!Object.keys(values).length) return getQuota(conn, name);
  const [row] = await conn.update(users).set(values).where(eq(users.name, name)).returning(quotaColumns);
  return row ?? null;
}

/** A task runs at most this long (the largest timeout): older tasks cannot have run since `since`. */
const LONGEST_RUN_MS = 30 * 24 * 3_600_000;

/**
 * Tasks that ran since `since` or run now: what quota windows and fair share are computed from.
 * Only tasks created in the longest run before `since` are read (the created_at index), and only
 * the four fields a run's use needs, from the columns Postgres keeps of each record (schema.ts:
 * `run_gpus`, and the times as epoch milliseconds). The window can hold a great many runs
 * (125,000 in the 1M-event benchmark), read at start-up and whenever a run may have changed: they
 * come as one text per owner and GPU count ("start end,start end,…", no end while running),
 * which the service splits. A row each cost the service's event loop twice the CPU (the driver
 * handling each row), in a read the start-up waits for. SQL text to the driver.
 */
const RECENT_RUNS = `SELECT owner, run_gpus,
    string_agg(run_started_ms::bigint || ' ' || coalesce(run_finished_ms::bigint::text, ''), ',') AS runs
  FROM tasks
  WHERE created_at >= $1::timestamptz AND run_started_ms IS NOT NULL
    AND (status IN (SELECT jsonb_array_elements_text($2::jsonb)) OR run_finished_ms >= $3::double precision)
  GROUP BY owner, run_gpus`;

export async function recentRuns(conn: Conn, since: Date): Promise<Run[]> {
  const groups = await queryRows<{ owner: string; run_gpus: number | string | null; runs: string }>(conn, RECENT_RUNS, [
    new Date(since.getTime() - LONGEST_RUN_MS).toISOString(),
    JSON.stringify(ACTIVE_STATUSES),
    since.getTime(),
  ]);
  const runs: Run[] = [];
  for (const g of groups) {
    const gpus = Number(g.run_gpus ?? 1);
    for (const run of g.runs.split(',')) {
      const space = run.indexOf(' ');
      const end = run.slice(space + 1);
      runs.push({ owner: g.owner, gpus, startMs: Number(run.slice(0, space)), endMs: end === '' ? null : Number(end) });
    }
  }
  return runs;
}
