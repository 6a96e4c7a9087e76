// Statements on users' quotas, priority caps and fair-share weights (columns of users), and the
// read the scheduler's accounts are computed from: the limits, and the tasks that ran recently.
import { asc, eq } from 'drizzle-orm';
import { ACTIVE_STATUSES, type UsageTask, type UserLimits } from '@trainyard/domain';
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
 * the four fields a run's use needs: the window can hold a great many (125,000 in the 1M-event
 * benchmark, read at start-up and at every GPU refresh). SQL text to the driver: drizzle's
 * builder mapped the rows one by one, about a third of this read's time at that size.
 */
const RECENT_RUNS = `SELECT owner, (record->'spec'->'resources'->>'gpus')::integer AS gpus,
    record->>'startedAt' AS started_at, record->>'finishedAt' AS finished_at
  FROM tasks
  WHERE created_at >= $1::timestamptz AND record->>'startedAt' IS NOT NULL
    AND (status IN (SELECT jsonb_array_elements_text($2::jsonb)) OR (record->>'finishedAt')::timestamptz >= $3::timestamptz)`;

export async function recentRuns(conn: Conn, since: Date): Promise<UsageTask[]> {
  const rows = await queryRows<{ owner: string; gpus: number | string | null; started_at: string | null; finished_at: string | null }>(
    conn,
    RECENT_RUNS,
    [new Date(since.getTime() - LONGEST_RUN_MS).toISOString(), JSON.stringify(ACTIVE_STATUSES), since.toISOString()],
  );
  return rows.map((r) => ({
    spec: { owner: r.owner, resources: { gpus: Number(r.gpus ?? 1) } },
    startedAt: r.started_at,
    finishedAt: r.finished_at,
  }));
}
