// Statements on trainer output lines, stored durably and in order (seq is the shepherd's line number).
// Not events: a flood of log lines must not drown the lifecycle's history.
import { and, asc, desc, eq, gt, sql } from 'drizzle-orm';
import { safeText, TERMINAL_STATUSES } from '@trainyard/domain';
import { rowsOf, type Conn } from '../database';
import { taskLogs } from '../schema';

export interface LogLine {
  seq: number;
  stream: 'stdout' | 'stderr';
  line: string;
  at: string;
}

/**
 * Insert lines (idempotent on (task, seq), so a re-attached tailer may resend some). A trainer
 * writes whatever bytes it likes: NUL and lone surrogates, which Postgres refuses in text, are
 * stored as U+FFFD (see safeText), so one such line cannot make its whole batch fail.
 */
export async function appendLogLines(conn: Conn, taskId: string, lines: readonly LogLine[]): Promise<void> {
  if (lines.length === 0) return;
  // Postgres caps a statement at 65535 parameters: 5 per row.
  for (let i = 0; i < lines.length; i += 5000) {
    await conn
      .insert(taskLogs)
      .values(lines.slice(i, i + 5000).map((l) => ({ taskId, seq: l.seq, stream: l.stream, line: safeText(l.line), at: l.at })))
      .onConflictDoNothing();
  }
}

export async function readLogLines(conn: Conn, taskId: string, afterSeq: number, limit: number): Promise<LogLine[]> {
  const rows = await conn
    .select({ seq: taskLogs.seq, stream: taskLogs.stream, line: taskLogs.line, at: taskLogs.at })
    .from(taskLogs)
    .where(and(eq(taskLogs.taskId, taskId), gt(taskLogs.seq, afterSeq)))
    .orderBy(asc(taskLogs.seq))
    .limit(limit);
  return rows as LogLine[];
}

export async function lastLogLines(conn: Conn, taskId: string, count: number): Promise<LogLine[]> {
  const rows = await conn
    .select({ seq: taskLogs.seq, stream: taskLogs.stream, line: taskLogs.line, at: taskLogs.at })
    .from(taskLogs)
    .where(eq(taskLogs.taskId, taskId))
    .orderBy(desc(taskLogs.seq))
    .limit(count);
  return (rows as LogLine[]).reverse();
}

export async function lastLogSeq(conn: Conn, taskId: string): Promise<number> {
  const [row] = await conn
    .select({ seq: taskLogs.seq })
    .from(taskLogs)
    .where(eq(taskLogs.taskId, taskId))
    .orderBy(desc(taskLogs.seq))
    .limit(1);
  return row?.seq ?? 0;
}

/**
 * Lines deleted per statement: the first prune of a long history (millions of lines) is a series
 * of short statements, each well inside the statement limit (TRAINYARD_DB_QUERY_TIMEOUT_MS).
 */
const PRUNE_BATCH = 10_000;

/**
 * Delete the output lines of tasks that ended (COMPLETED, FAILED, CANCELLED) before `endedBefore`:
 * the retention policy of trainer output. Their events, the task's history, stay. Returns how
 * many lines were deleted.
 */
export async function pruneLogs(conn: Conn, endedBefore: Date, batch = PRUNE_BATCH): Promise<number> {
  const statuses = sql.join(
    TERMINAL_STATUSES.map((s) => sql`${s}`),
    sql`, `,
  );
  let deleted = 0;
  for (;;) {
    const rows = rowsOf<{ n: number | string }>(
      await conn.execute(sql`
        WITH doomed AS (
          SELECT l.task_id, l.seq FROM task_logs l JOIN tasks t ON t.id = l.task_id
          WHERE t.status IN (${statuses})
            AND (t.record->>'finishedAt')::timestamptz < ${endedBefore.toISOString()}::timestamptz
          LIMIT ${batch}
        ), pruned AS (
          DELETE FROM task_logs l USING doomed d
          WHERE l.task_id = d.task_id AND l.seq = d.seq
          RETURNING 1
        )
        SELECT count(*)::integer AS n FROM pruned`),
    );
    const n = Number(rows[0]?.n ?? 0);
    deleted += n;
    if (n < batch) return deleted;
  }
}
