// Statements on users' quotas, priority caps and fair-share weights (columns of users), and the
// read the scheduler's accounts are computed from: the limits, and the tasks that ran recently.
import { and, asc, eq, gte, inArray, isNotNull, or, sql } from 'drizzle-orm';
import { ACTIVE_STATUSES, type UsageTask, type UserLimits } from '@trainyard/domain';
import type { Conn } from '../database';
import { tasks, users } from '../schema';

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
 * Only tasks created in the longest run before `since` are read (the created_at index).
 */
export async function recentRuns(conn: Conn, since: Date): Promise<UsageTask[]> {
  // Only the four fields a run's use needs, not whole records: the window can hold a great many.
  const rows = await conn
    .select({
      owner: tasks.owner,
      gpus: sql<number | string | null>`(${tasks.record}->'spec'->'resources'->>'gpus')::integer`,
      startedAt: sql<string | null>`${tasks.record}->>'startedAt'`,
      finishedAt: sql<string | null>`${tasks.record}->>'finishedAt'`,
    })
    .from(tasks)
    .where(
      and(
        gte(tasks.createdAt, new Date(since.getTime() - LONGEST_RUN_MS).toISOString()),
        isNotNull(sql`${tasks.record}->>'startedAt'`),
        or(
          inArray(tasks.status, [...ACTIVE_STATUSES]),
          sql`(${tasks.record}->>'finishedAt')::timestamptz >= ${since.toISOString()}::timestamptz`,
        ),
      ),
    );
  return rows.map((r) => ({
    spec: { owner: r.owner, resources: { gpus: Number(r.gpus ?? 1) } },
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
  }));
}
