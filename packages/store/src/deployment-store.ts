// Deployments (packages/domain/src/deployment.ts) in the store: each command is one transaction
// that decides against the projected record, appends the events to the deployment's own stream
// of the shared log (optimistic concurrency: a racing writer gets ConcurrencyError), and writes
// the projection row (`deployments`) in the same commit.
import { and, desc, eq, lt, or, sql } from 'drizzle-orm';
import {
  decideDeployment,
  deploymentHolds,
  deploymentStateFromRecord,
  evolveDeployment,
  initialDeploymentState,
  isDeploymentStream,
  toDeploymentRecord,
  type DeploymentCommand,
  type DeploymentHold,
  type DeploymentRecord,
  type NewDeploymentEvent,
  type NewTaskEvent,
  type StoredDeploymentEvent,
} from '@trainyard/domain';
import type { Conn, Database, Tx } from './database';
import { deployments, deviceHolders } from './schema';
import { appendToStream } from './sql/events';
import { listDevicesWithHolders, type DeviceWithHolders } from './sql/devices';
import { lockQueue } from './sql/queue';

/** A deployment that fits nowhere now (placement or reclaim under the queue lock): why, in one sentence. */
export class DeploymentPlacementError extends Error {
  readonly code = 'DEPLOYMENT_DOES_NOT_FIT' as const;
  constructor(
    readonly deploymentId: string,
    readonly reason: string,
  ) {
    super(`deployment ${deploymentId} ${reason}`);
    this.name = 'DeploymentPlacementError';
  }
}

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

/**
 * The deployment's rows in device_holders (holder id = deployment id): its memory on each device
 * while it holds it, as the scheduler counts every holder; none once released asleep or ended.
 */
async function projectHolds(tx: Conn, record: DeploymentRecord, lastPosition: string): Promise<void> {
  await tx.delete(deviceHolders).where(eq(deviceHolders.taskId, record.id));
  const holds = deploymentHolds(record);
  if (holds.length)
    await tx
      .insert(deviceHolders)
      .values(holds.map((h) => ({ deviceId: h.deviceId, taskId: record.id, memoryMb: h.memoryMb, exclusive: false, since: lastPosition })));
}

async function project(tx: Conn, record: DeploymentRecord, owner: string, lastPosition: string): Promise<void> {
  await projectHolds(tx, record, lastPosition);
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
    return this.commands(id, [command], actor);
  }

  /**
   * Takes devices for deployment `id` under the queue lock (as the scheduler places tasks, so the
   * two never grant the same memory): `choose` answers its holds from the devices as they are in
   * this transaction, or why it fits nowhere (DeploymentPlacementError). `first` come before: a
   * create placed at once ([create], then place); with `reclaim`, a sleeping one takes its own back.
   */
  async place(
    id: string,
    first: DeploymentCommand[],
    choose: (devices: DeviceWithHolders[], record: DeploymentRecord | null) => { holds: DeploymentHold[] } | { reason: string },
    actor: string,
    reclaim = false,
  ): Promise<DeploymentRecord> {
    return this.commands(id, first, actor, async (tx, record) => {
      await lockQueue(tx);
      const chosen = choose(await listDevicesWithHolders(tx), record);
      if ('reason' in chosen) throw new DeploymentPlacementError(id, chosen.reason);
      return reclaim ? { type: 'reclaim' } : { type: 'place', devices: chosen.holds };
    });
  }

  private async commands(
    id: string,
    commands: DeploymentCommand[],
    actor: string,
    last?: (tx: Tx, record: DeploymentRecord | null) => Promise<DeploymentCommand>,
  ): Promise<DeploymentRecord> {
    return this.database.db.transaction(async (tx: Tx) => {
      const before = commands[0]?.type === 'create' ? null : await loadDeployment(tx, id);
      const state = before ? deploymentStateFromRecord(before.record) : initialDeploymentState();
      // Each command decided on the state the previous ones lead to (folded provisionally: no
      // position or time yet; decisions depend on event data only), all appended at once.
      const events: NewDeploymentEvent[] = [];
      let probe = state;
      const provisional = (s: typeof state, e: NewDeploymentEvent) =>
        evolveDeployment(s, {
          ...e,
          streamId: id,
          version: s.version + 1,
          position: '0',
          recordedAt: new Date(0).toISOString(),
        } as StoredDeploymentEvent);
      const decide = (c: DeploymentCommand) => {
        const decided = decideDeployment(probe, c, id);
        events.push(...decided);
        probe = decided.reduce(provisional, probe);
      };
      for (const c of commands) decide(c);
      if (last) decide(await last(tx, probe.version ? toDeploymentRecord(probe) : null));
      // The log's append is typed for task events; a deployment's share its columns and checks.
      const stored = await appendToStream(tx, id, state.version, events as unknown as NewTaskEvent[], { actor });
      const after = stored.reduce((s, e) => evolveDeployment(s, e as unknown as StoredDeploymentEvent), state);
      const record = toDeploymentRecord(after);
      await project(tx, record, before?.owner ?? actor, stored[stored.length - 1]!.position);
      return record;
    });
  }
}

/** The deployments folded from the log: each one's record, owner (who created it) and last position. */
export class DeploymentFold {
  private readonly states = new Map<string, { state: ReturnType<typeof initialDeploymentState>; owner: string; last: string }>();

  add(ev: { streamId: string; type: string; position: string; metadata?: { actor?: string } }): void {
    if (!isDeploymentStream(ev.streamId)) return;
    const was = this.states.get(ev.streamId);
    const state = evolveDeployment(was?.state ?? initialDeploymentState(), ev as unknown as StoredDeploymentEvent);
    this.states.set(ev.streamId, { state, owner: was?.owner ?? ev.metadata?.actor ?? '', last: ev.position });
  }

  result(): Map<string, { record: DeploymentRecord; owner: string; lastPosition: string }> {
    return new Map([...this.states].map(([id, s]) => [id, { record: toDeploymentRecord(s.state), owner: s.owner, lastPosition: s.last }]));
  }
}

/** Holder rows of the deployments (as device_holders holds them), for a comparison with a rebuild. */
export function deploymentHolderRows(
  records: Iterable<DeploymentRecord>,
): { deviceId: string; taskId: string; memoryMb: number; exclusive: boolean }[] {
  return [...records].flatMap((r) =>
    deploymentHolds(r).map((h) => ({ deviceId: h.deviceId, taskId: r.id, memoryMb: h.memoryMb, exclusive: false })),
  );
}

/** Every projected deployment record, by id. */
export async function allDeploymentRows(conn: Conn): Promise<Map<string, DeploymentRow>> {
  const rows = await conn.select({ record: deployments.record, owner: deployments.owner }).from(deployments);
  return new Map(rows.map((r) => [r.record.id, r]));
}

/** Replace the deployments table (and their holder rows, already cleared with the task read models) with a fold's. */
export async function replaceDeployments(
  tx: Conn,
  folded: Map<string, { record: DeploymentRecord; owner: string; lastPosition: string }>,
): Promise<void> {
  await tx.delete(deployments);
  for (const { record, owner, lastPosition } of folded.values()) await project(tx, record, owner, lastPosition);
}
