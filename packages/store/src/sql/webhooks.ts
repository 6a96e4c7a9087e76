// Statements on webhooks and their deliveries (the rules are packages/domain/src/webhooks.ts).
// A delivery is planned once per webhook and ending (unique key), whichever instance reads the
// ending first; an instance claims due deliveries for a while (claimed_until, by the database's
// clock) so two never send the same attempt at once. Each attempt is a row of webhook_attempts.
import { sql } from 'drizzle-orm';
import type { DeliveryDecision, PlannedDelivery, WebhookEndpoint, WebhookEventType } from '@trainyard/domain';
import { rowsOf, type Conn } from '../database';
import { compareTailCursors, type TailCursor } from './events';

/** A webhook as the API shows it: never its secret. */
export interface WebhookView {
  id: string;
  /** Whose tasks it hears of; null: every user's. */
  owner: string | null;
  url: string;
  events: WebhookEventType[];
  createdBy: string;
  createdAt: string;
}

type HookRow = { id: string; owner: string | null; url: string; events: unknown; created_by: string; created_at: string | Date };

const hookView = (r: HookRow): WebhookView => ({
  id: r.id,
  owner: r.owner,
  url: r.url,
  events: (typeof r.events === 'string' ? JSON.parse(r.events) : r.events) as WebhookEventType[],
  createdBy: r.created_by,
  createdAt: new Date(r.created_at).toISOString(),
});

const iso = (v: string | Date | null): string | null => (v === null ? null : new Date(v).toISOString());
const ms = (n: number) => sql`(${n}::double precision * interval '1 millisecond')`;

export async function createWebhook(
  conn: Conn,
  w: { id: string; owner: string | null; url: string; secret: string; events: readonly WebhookEventType[]; createdBy: string },
): Promise<WebhookView> {
  const [row] = rowsOf<HookRow>(
    await conn.execute(sql`INSERT INTO webhooks (id, owner, url, secret, events, created_by)
      VALUES (${w.id}, ${w.owner}, ${w.url}, ${w.secret}, ${JSON.stringify(w.events)}::jsonb, ${w.createdBy})
      RETURNING id, owner, url, events, created_by, created_at`),
  );
  return hookView(row!);
}

/** Webhooks not deleted: `owner` a user's own, or (undefined) every one. Oldest first. */
export async function listWebhooks(conn: Conn, scope: { owner?: string }): Promise<WebhookView[]> {
  const where = scope.owner === undefined ? sql`` : sql` AND owner = ${scope.owner}`;
  return rowsOf<HookRow>(
    await conn.execute(sql`SELECT id, owner, url, events, created_by, created_at FROM webhooks
      WHERE deleted_at IS NULL${where} ORDER BY created_at, id`),
  ).map(hookView);
}

export async function getWebhook(conn: Conn, id: string): Promise<WebhookView | null> {
  const [row] = rowsOf<HookRow>(
    await conn.execute(sql`SELECT id, owner, url, events, created_by, created_at FROM webhooks WHERE id = ${id} AND deleted_at IS NULL`),
  );
  return row ? hookView(row) : null;
}

/** Delete a webhook: nothing more is planned for it, and its pending deliveries are failed. True when it existed. */
export async function deleteWebhook(conn: Conn, id: string): Promise<boolean> {
  return conn.transaction(async (tx) => {
    const gone = rowsOf(await tx.execute(sql`UPDATE webhooks SET deleted_at = now() WHERE id = ${id} AND deleted_at IS NULL RETURNING id`));
    if (!gone.length) return false;
    await tx.execute(sql`UPDATE webhook_deliveries SET state = 'failed', finished_at = now(), next_attempt_at = NULL,
      last_error = 'the webhook was deleted' WHERE webhook_id = ${id} AND state = 'pending'`);
    return true;
  });
}

/** What planning needs of every live webhook. */
export async function webhookEndpoints(conn: Conn): Promise<WebhookEndpoint[]> {
  return (await listWebhooks(conn, {})).map((w) => ({ id: w.id, owner: w.owner, events: w.events }));
}

export async function readWebhookCursor(conn: Conn): Promise<TailCursor | null> {
  const [row] = rowsOf<{ transaction_id: string; position: string }>(
    await conn.execute(sql`SELECT transaction_id, position FROM webhook_cursor WHERE id = 'tail'`),
  );
  return row ? { transactionId: row.transaction_id, position: row.position } : null;
}

/**
 * Add the planned deliveries (those planned already are left as they are) and move the cursor
 * to `cursor` unless it is already past it, in one transaction: an ending is planned before the
 * cursor passes it, so a crash between the two cannot lose it.
 */
export async function planWebhookDeliveries(conn: Conn, planned: readonly PlannedDelivery[], cursor: TailCursor): Promise<number> {
  return conn.transaction(async (tx) => {
    let added = 0;
    for (const p of planned) {
      const owner = p.body.task.owner;
      const rows = rowsOf(
        await tx.execute(sql`INSERT INTO webhook_deliveries (id, webhook_id, task_id, owner, event_position, type, body, state, next_attempt_at)
          SELECT ${p.body.id}, ${p.webhookId}, ${p.taskId}, ${owner}, ${p.eventPosition}::bigint, ${p.type}, ${JSON.stringify(p.body)}, 'pending', now()
          WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = ${p.webhookId} AND deleted_at IS NULL)
          ON CONFLICT DO NOTHING RETURNING id`),
      );
      added += rows.length;
    }
    const [row] = rowsOf<{ transaction_id: string; position: string }>(
      await tx.execute(sql`SELECT transaction_id, position FROM webhook_cursor WHERE id = 'tail' FOR UPDATE`),
    );
    if (!row)
      await tx.execute(
        sql`INSERT INTO webhook_cursor (id, transaction_id, position) VALUES ('tail', ${cursor.transactionId}, ${cursor.position}) ON CONFLICT (id) DO NOTHING`,
      );
    else if (compareTailCursors({ transactionId: row.transaction_id, position: row.position }, cursor) < 0)
      await tx.execute(
        sql`UPDATE webhook_cursor SET transaction_id = ${cursor.transactionId}, position = ${cursor.position} WHERE id = 'tail'`,
      );
    return added;
  });
}

/** A delivery claimed for sending, with what sending needs. */
export interface DueDelivery {
  id: string;
  webhookId: string;
  taskId: string;
  type: string;
  url: string;
  secret: string;
  body: string;
  /** Attempts made before this one. */
  attempts: number;
  /** Made by an admin: a global webhook (no owner), or one whose creator is an admin user now. */
  byAdmin: boolean;
}

/**
 * Claim up to `limit` deliveries whose next attempt is due and that nobody is sending, for
 * `claimMs` (longer than one attempt may take); oldest due first.
 */
export async function claimDueDeliveries(conn: Conn, limit: number, claimMs: number): Promise<DueDelivery[]> {
  const rows = rowsOf<{
    id: string;
    webhook_id: string;
    task_id: string;
    type: string;
    body: string;
    attempts: number;
    url: string;
    secret: string;
    by_admin: boolean;
  }>(
    await conn.execute(sql`WITH due AS (
        SELECT d.id FROM webhook_deliveries d
        WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND (d.claimed_until IS NULL OR d.claimed_until < now())
        ORDER BY d.next_attempt_at, d.id LIMIT ${limit} FOR UPDATE SKIP LOCKED)
      UPDATE webhook_deliveries d SET claimed_until = now() + ${ms(claimMs)}
      FROM due, webhooks w
      WHERE d.id = due.id AND w.id = d.webhook_id AND w.deleted_at IS NULL
      RETURNING d.id, d.webhook_id, d.task_id, d.type, d.body, d.attempts, w.url, w.secret,
        (w.owner IS NULL OR EXISTS (SELECT 1 FROM users u WHERE u.name = w.created_by AND u.admin)) AS by_admin`),
  );
  return rows.map((r) => ({
    id: r.id,
    webhookId: r.webhook_id,
    taskId: r.task_id,
    type: r.type,
    url: r.url,
    secret: r.secret,
    body: r.body,
    attempts: Number(r.attempts),
    byAdmin: r.by_admin === true || (r.by_admin as unknown) === 't',
  }));
}

export interface AttemptRecord {
  attempt: number;
  status: number | null;
  error: string | null;
  durationMs: number;
}

/** Record an attempt and the decision after it: delivered, failed, or pending again after `delayMs`. */
export async function recordWebhookAttempt(conn: Conn, deliveryId: string, a: AttemptRecord, decision: DeliveryDecision): Promise<void> {
  const why = decision.kind === 'delivered' ? null : decision.why;
  const retryIn = decision.kind === 'retry' ? decision.delayMs : null;
  await conn.transaction(async (tx) => {
    await tx.execute(sql`INSERT INTO webhook_attempts (delivery_id, attempt, status, error, duration_ms, outcome, why, retry_in_ms)
      VALUES (${deliveryId}, ${a.attempt}, ${a.status}, ${a.error}, ${Math.round(a.durationMs)}, ${decision.kind}, ${why}, ${retryIn})
      ON CONFLICT DO NOTHING`);
    if (decision.kind === 'retry')
      await tx.execute(sql`UPDATE webhook_deliveries SET attempts = ${a.attempt}, claimed_until = NULL, last_error = ${why},
        next_attempt_at = now() + ${ms(decision.delayMs)} WHERE id = ${deliveryId}`);
    else
      await tx.execute(sql`UPDATE webhook_deliveries SET attempts = ${a.attempt}, claimed_until = NULL, last_error = ${why},
        state = ${decision.kind}, next_attempt_at = NULL, finished_at = now() WHERE id = ${deliveryId}`);
  });
}

export interface DeliveryView {
  id: string;
  webhookId: string;
  taskId: string;
  type: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: Array<{
    attempt: number;
    at: string;
    status: number | null;
    error: string | null;
    durationMs: number;
    outcome: string;
    why: string | null;
    retryInMs: number | null;
  }>;
  nextAttemptAt: string | null;
  lastError: string | null;
  createdAt: string;
  finishedAt: string | null;
}

/** Deliveries, newest first, with their attempts: `owner` a user's tasks' (undefined: all), of one task or webhook. */
export async function listWebhookDeliveries(
  conn: Conn,
  q: { owner?: string; taskId?: string; webhookId?: string; limit: number },
): Promise<DeliveryView[]> {
  const conds = [sql`TRUE`];
  if (q.owner !== undefined) conds.push(sql`owner = ${q.owner}`);
  if (q.taskId !== undefined) conds.push(sql`task_id = ${q.taskId}`);
  if (q.webhookId !== undefined) conds.push(sql`webhook_id = ${q.webhookId}`);
  const rows = rowsOf<{
    id: string;
    webhook_id: string;
    task_id: string;
    type: string;
    state: DeliveryView['state'];
    next_attempt_at: string | Date | null;
    last_error: string | null;
    created_at: string | Date;
    finished_at: string | Date | null;
  }>(
    await conn.execute(sql`SELECT id, webhook_id, task_id, type, state, next_attempt_at, last_error, created_at, finished_at
      FROM webhook_deliveries WHERE ${sql.join(conds, sql` AND `)}
      ORDER BY event_position DESC, id LIMIT ${q.limit}`),
  );
  if (!rows.length) return [];
  const attempts = rowsOf<{
    delivery_id: string;
    attempt: number;
    at: string | Date;
    status: number | null;
    error: string | null;
    duration_ms: number;
    outcome: string;
    why: string | null;
    retry_in_ms: number | null;
  }>(
    await conn.execute(sql`SELECT delivery_id, attempt, at, status, error, duration_ms, outcome, why, retry_in_ms FROM webhook_attempts
      WHERE delivery_id IN (${sql.join(
        rows.map((r) => sql`${r.id}`),
        sql`, `,
      )}) ORDER BY delivery_id, attempt`),
  );
  return rows.map((r) => ({
    id: r.id,
    webhookId: r.webhook_id,
    taskId: r.task_id,
    type: r.type,
    state: r.state,
    attempts: attempts
      .filter((a) => a.delivery_id === r.id)
      .map((a) => ({
        attempt: Number(a.attempt),
        at: new Date(a.at).toISOString(),
        status: a.status === null ? null : Number(a.status),
        error: a.error,
        durationMs: Number(a.duration_ms),
        outcome: a.outcome,
        why: a.why,
        retryInMs: a.retry_in_ms === null ? null : Number(a.retry_in_ms),
      })),
    nextAttemptAt: iso(r.next_attempt_at),
    lastError: r.last_error,
    createdAt: new Date(r.created_at).toISOString(),
    finishedAt: iso(r.finished_at),
  }));
}
