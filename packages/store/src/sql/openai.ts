// Statements on what the OpenAI-compatible API keeps beside the tasks: uploaded files and the
// request side of fine-tuning jobs (services/server/src/openai/). Lists are newest first,
// keyset-paginated on (created_at, id) after a row's id, as OpenAI's `after` cursors are.
import { and, asc, desc, eq, inArray, notInArray, or, sql, type SQL } from 'drizzle-orm';
import { TERMINAL_STATUSES, type TaskRecord, type TaskStatus } from '@trainyard/domain';
import type { Conn } from '../database';
import { openaiFiles, openaiJobs, tasks } from '../schema';

export type OpenAiFileRow = typeof openaiFiles.$inferSelect;
export type NewOpenAiFile = Omit<typeof openaiFiles.$inferInsert, 'createdAt'>;
export type OpenAiJobRow = typeof openaiJobs.$inferSelect;
export type NewOpenAiJob = Omit<typeof openaiJobs.$inferInsert, 'createdAt'>;

export async function insertOpenAiFile(conn: Conn, row: NewOpenAiFile): Promise<OpenAiFileRow> {
  const [stored] = await conn.insert(openaiFiles).values(row).returning();
  return stored!;
}

export async function getOpenAiFile(conn: Conn, id: string): Promise<OpenAiFileRow | null> {
  const [row] = await conn.select().from(openaiFiles).where(eq(openaiFiles.id, id));
  return row ?? null;
}

/** Removes a file's row; false when there was none. */
export async function deleteOpenAiFile(conn: Conn, id: string): Promise<boolean> {
  const rows = await conn.delete(openaiFiles).where(eq(openaiFiles.id, id)).returning({ id: openaiFiles.id });
  return rows.length > 0;
}

/** `(created_at, id)` strictly past the row `after` in the list's order; null when there is no such row. */
async function pastFile(conn: Conn, after: string, order: 'asc' | 'desc'): Promise<SQL | null> {
  const [row] = await conn.select({ createdAt: openaiFiles.createdAt }).from(openaiFiles).where(eq(openaiFiles.id, after));
  if (!row) return null;
  return order === 'desc'
    ? sql`(${openaiFiles.createdAt}, ${openaiFiles.id}) < (${row.createdAt}::timestamptz, ${after}::text)`
    : sql`(${openaiFiles.createdAt}, ${openaiFiles.id}) > (${row.createdAt}::timestamptz, ${after}::text)`;
}

/**
 * A page of files: `owner`'s (all when absent), of one purpose when named, after the file
 * `after` (a file id; `missing` when it is not one), `limit` of them; `hasMore` when more follow.
 */
export async function listOpenAiFiles(
  conn: Conn,
  q: { owner?: string | undefined; purpose?: string | undefined; after?: string | undefined; limit: number; order: 'asc' | 'desc' },
): Promise<{ rows: OpenAiFileRow[]; hasMore: boolean } | 'missing'> {
  const conds: SQL[] = [];
  if (q.owner !== undefined) conds.push(eq(openaiFiles.owner, q.owner));
  if (q.purpose !== undefined) conds.push(eq(openaiFiles.purpose, q.purpose));
  if (q.after !== undefined) {
    const past = await pastFile(conn, q.after, q.order);
    if (!past) return 'missing';
    conds.push(past);
  }
  const by = q.order === 'desc' ? desc : asc;
  const rows = await conn
    .select()
    .from(openaiFiles)
    .where(conds.length ? and(...conds) : undefined)
    .orderBy(by(openaiFiles.createdAt), by(openaiFiles.id))
    .limit(q.limit + 1);
  return { rows: rows.slice(0, q.limit), hasMore: rows.length > q.limit };
}

/** Records a job; a job already recorded for the task (a retried request) is kept as it is. */
export async function insertOpenAiJob(conn: Conn, row: NewOpenAiJob): Promise<OpenAiJobRow> {
  await conn.insert(openaiJobs).values(row).onConflictDoNothing({ target: openaiJobs.taskId });
  const [stored] = await conn.select().from(openaiJobs).where(eq(openaiJobs.taskId, row.taskId));
  return stored!;
}

export async function getOpenAiJob(conn: Conn, taskId: string): Promise<OpenAiJobRow | null> {
  const [row] = await conn.select().from(openaiJobs).where(eq(openaiJobs.taskId, taskId));
  return row ?? null;
}

/**
 * A page of jobs with their tasks, newest first: `owner`'s (all when absent), deleted tasks left
 * out (only those in `statuses` when named), after the job of task `after` (`missing` when there is no such job), `limit` of them.
 */
export async function listOpenAiJobs(
  conn: Conn,
  q: { owner?: string | undefined; after?: string | undefined; statuses?: TaskStatus[] | undefined; limit: number },
): Promise<{ rows: { job: OpenAiJobRow; task: TaskRecord }[]; hasMore: boolean } | 'missing'> {
  const conds: SQL[] = [eq(tasks.deleted, false)];
  if (q.statuses?.length) conds.push(inArray(tasks.status, q.statuses));
  if (q.owner !== undefined) conds.push(eq(openaiJobs.owner, q.owner));
  if (q.after !== undefined) {
    const [row] = await conn.select({ createdAt: openaiJobs.createdAt }).from(openaiJobs).where(eq(openaiJobs.taskId, q.after));
    if (!row) return 'missing';
    conds.push(sql`(${openaiJobs.createdAt}, ${openaiJobs.taskId}) < (${row.createdAt}::timestamptz, ${q.after}::text)`);
  }
  const rows = await conn
    .select({ job: openaiJobs, task: tasks.record })
    .from(openaiJobs)
    .innerJoin(tasks, eq(tasks.id, openaiJobs.taskId))
    .where(and(...conds))
    .orderBy(desc(openaiJobs.createdAt), desc(openaiJobs.taskId))
    .limit(q.limit + 1);
  return { rows: rows.slice(0, q.limit), hasMore: rows.length > q.limit };
}

/** The tasks not yet ended whose job trains or validates on this file (at most `limit`). */
export async function openJobsUsingFile(conn: Conn, fileId: string, limit = 5): Promise<string[]> {
  const rows = await conn
    .select({ taskId: openaiJobs.taskId })
    .from(openaiJobs)
    .innerJoin(tasks, eq(tasks.id, openaiJobs.taskId))
    .where(
      and(or(eq(openaiJobs.trainingFile, fileId), eq(openaiJobs.validationFile, fileId)), notInArray(tasks.status, [...TERMINAL_STATUSES])),
    )
    .orderBy(asc(openaiJobs.createdAt))
    .limit(limit);
  return rows.map((r) => r.taskId);
}
