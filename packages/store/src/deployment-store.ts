// Deployments (packages/domain/src/deployment.ts) in the store: each command is one transaction
// that decides against the projected record, appends the events to the deployment's own stream
// of the shared log (optimistic concurrency: a racing writer gets ConcurrencyError), and writes
// the projection row (`deployments`) in the same commit.
import { and, desc, eq, lt, or, sql } from 'drizzle-orm';
import {
  decideDeployment,
  deploymentStateFromRecord,
  evolveDeployment,
  initialDeploymentState,
  toDeploymentRecord,
  type DeploymentCommand,
  type DeploymentRecord,
  type NewTaskEvent,
  type StoredDeploymentEvent,
} from '@trainyard/domain';
import type { Conn, Database, Tx } from './database';
import { deployments } from './schema';
import { appendToStream } from './sql/events';

export interface DeploymentRow {
  record: DeploymentRecord;
  owner: string;
}

export async function loadDeployment(conn: Conn, id: string): Promise<DeploymentRow | null> {
  const [row] = await conn.select({ record: deployments.record, owner: deployments.owner }).from(deployments).where(eq(deployments.id, id));
  return row ?? null;
}

/** Newest first, deleted ones left out; `owner` narrows to one user's. */
export async function listDeployments(
  conn: Conn,
  q: { owner?: string | null; limit: number; before?: { createdAt: string; id: string } | null },
): Promise<DeploymentRow[]> {
  const where = and(
    eq(deployments.deleted, false),
    q.owner ? eq(deployments.owner, q.owner) : undefined,
    q.before
      ? or(
          lt(deployments.createdAt, q.before.createdAt),
          and(eq(deployments.createdAt, q.before.createdAt), lt(deployments.id, q.before.id)),
        )
      : undefined,
  );
  return conn
    .select({ record: deployments.record, owner: deployments.owner })
    .from(deployments)
    .where(where)
    .orderBy(desc(deployments.createdAt), desc(deployments.id))
    .limit(q.limit);
}

/** Deployments not yet STOPPED or FAILED (the ones whose servers the service looks after). */
export async function listLiveDeployments(conn: Conn): Promise<DeploymentRow[]> {
  return conn
    .select({ record: deployments.record, owner: deployments.owner })
    .from(deployments)
    .where(sql`${deployments.status} NOT IN ('STOPPED', 'FAILED')`)
    .orderBy(deployments.createdAt, deployments.id);
}

async function project(tx: Conn, record: DeploymentRecord, owner: string, lastPosition: string): Promise<void> {
  const row = {
    id: record.id,
    status: record.status,
    version: record.version,
    owner,
    taskId: record.spec.taskId,
    createdAt: record.createdAt,
    deleted: record.deleted,
    lastPosition,
    record,
  };
  await tx
    .insert(deployments)
    .values(row)
    .onConflictDoUpdate({
      target: deployments.id,
      set: { status: row.status, version: row.version, deleted: row.deleted, lastPosition, record },
    });
}

export class DeploymentStore {
  constructor(private readonly database: Database) {}

  get(id: string): Promise<DeploymentRow | null> {
    return loadDeployment(this.database.db, id);
  }

  /** Decides `command` for deployment `id` as `actor` (the owner, for a create) and commits it; answers the record after. */
  async command(id: string, command: DeploymentCommand, actor: string): Promise<DeploymentRecord> {
    return this.database.db.transaction(async (tx: Tx) => {
      const before = command.type === 'create' ? null : await loadDeployment(tx, id);
      const state = before ? deploymentStateFromRecord(before.record) : initialDeploymentState();
      const events = decideDeployment(state, command, id);
      // The log's append is typed for task events; a deployment's share its columns and checks.
      const stored = await appendToStream(tx, id, state.version, events as unknown as NewTaskEvent[], { actor });
      const after = stored.reduce((s, e) => evolveDeployment(s, e as unknown as StoredDeploymentEvent), state);
      const record = toDeploymentRecord(after);
      await project(tx, record, before?.owner ?? actor, stored[stored.length - 1]!.position);
      return record;
    });
  }
}
