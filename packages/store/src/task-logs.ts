// Trainer output lines, stored durably and in order (seq is the shepherd's line number).
// Not events: a flood of log lines must not drown the lifecycle's history.
import { and, asc, desc, eq, gt } from 'drizzle-orm';
import type { Conn } from './database';
import { taskLogs } from './schema';

export interface LogLine {
  seq: number;
  stream: 'stdout' | 'stderr';
  line: string;
  at: string;
}

/** Insert lines (idempotent on (task, seq), so a re-attached tailer may resend some). */
export async function appendLogLines(conn: Conn, taskId: string, lines: readonly LogLine[]): Promise<void> {
  if (lines.length === 0) return;
  // Postgres caps a statement at 65535 parameters: 5 per row.
  for (let i = 0; i < lines.length; i += 5000) {
    await conn
      .insert(taskLogs)
      .values(lines.slice(i, i + 5000).map((l) => ({ taskId, ...l })))
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
