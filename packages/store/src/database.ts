// Storage selection: embedded PGlite by default (no server needed), Postgres when a URL is
// given. Both run the same drizzle-kit migrations at start-up and the same queries after, or,
// with `migrate: false` (a service role that may not change the schema), only check that an
// owner has applied them.
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import type { PgDatabase, PgQueryResultHKT, PgTransaction } from 'drizzle-orm/pg-core';
import type { ExtractTablesWithRelations } from 'drizzle-orm';
import postgres from 'postgres';
import { InFlightWrites } from './in-flight-writes';
import { pipelinedTransactions } from './pipelined-transaction';
import { preparingStatements } from './prepared-statements';
import { silentHostPool } from './silent-host-pool';
import * as schema from './schema';

export type Schema = typeof schema;
export type Db = PgDatabase<PgQueryResultHKT, Schema>;
export type Tx = PgTransaction<PgQueryResultHKT, Schema, ExtractTablesWithRelations<Schema>>;
/** Anything queries can run on: the database or an open transaction. */
export type Conn = Db | Tx;

export const MIGRATIONS_FOLDER = resolve(dirname(fileURLToPath(import.meta.url)), '../../../migrations');

export type StorageKind = 'pglite' | 'postgres';

export interface Database {
  kind: StorageKind;
  db: Db;
  /** Where the data lives, for logs and health (no password). */
  location: string;
  schema: string;
  /**
   * A transaction, on Postgres with its BEGIN sent along with its first statement and its COMMIT
   * right behind the writes `fn` left in flight (pipelined-transaction.ts). It commits only if
   * every write tracked in `writes` succeeded, and otherwise throws the first that failed.
   */
  transaction<T>(fn: (tx: Tx, writes: InFlightWrites) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Postgres URL; without one, embedded PGlite. */
  url?: string | undefined;
  /** PGlite data directory; `memory://` (or undefined with inMemory) keeps it in memory. */
  dataDir?: string | undefined;
  /** Postgres schema holding every table (tests use one per run). */
  schema?: string | undefined;
  /**
   * Apply pending migrations on open (default true). False: apply none, and refuse to open a
   * schema that lacks any (the owner runs `npm run db:migrate`; the service's role may not).
   */
  migrate?: boolean;
  /** Postgres pool size. */
  maxConnections?: number;
  /**
   * Postgres: a statement still unanswered after this long is cancelled (it rejects with
   * QUERY_TIMEOUT), and when the cancel gets no answer either within 5 s (a silent network or
   * server) its connection is closed and the whole pool replaced (silent-host-pool.ts). TCP alone
   * takes many minutes to give up on a peer that went silent. 0 or absent: no limit.
   */
  queryTimeoutMs?: number | undefined;
}

const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;

export async function openDatabase(opts: OpenOptions = {}): Promise<Database> {
  const schemaName = opts.schema ?? 'trainyard';
  if (!SCHEMA_RE.test(schemaName)) throw new Error(`invalid schema name ${JSON.stringify(schemaName)}`);
  return opts.url ? openPostgres(opts.url, schemaName, opts) : openPglite(schemaName, opts);
}

async function openPglite(schemaName: string, opts: OpenOptions): Promise<Database> {
  // Loaded only when used: PGlite and its drizzle driver take ~150 ms to import, which a
  // service on Postgres would otherwise pay at every start.
  const [{ PGlite }, { drizzle: drizzlePglite }, { migrate: migratePglite }] = await Promise.all([
    import('@electric-sql/pglite'),
    import('drizzle-orm/pglite'),
    import('drizzle-orm/pglite/migrator'),
  ]);
  const dataDir = opts.dataDir ?? 'memory://';
  if (!dataDir.startsWith('memory://')) mkdirSync(dataDir, { recursive: true });
  const client = await PGlite.create(dataDir.startsWith('memory://') ? undefined : dataDir);
  // PGlite is one connection, so a session-level search_path holds for every query.
  await client.exec(`CREATE SCHEMA IF NOT EXISTS ${schemaName}; SET search_path TO ${schemaName};`);
  const db = drizzlePglite(client, { schema }) as unknown as Db;
  try {
    const pending = await pendingMigrationsIn(async (text) => (await client.query<Record<string, unknown>>(text)).rows, schemaName);
    if (pending.length && opts.migrate === false) throw new MigrationsPendingError(schemaName, pending);
    if (pending.length) {
      await migratePglite(db as never, { migrationsFolder: MIGRATIONS_FOLDER, migrationsSchema: schemaName });
    }
  } catch (err) {
    await client.close();
    throw err;
  }
  return {
    kind: 'pglite',
    db,
    schema: schemaName,
    location: dataDir.startsWith('memory://') ? 'in memory' : resolve(dataDir),
    // A PGlite transaction ends when its callback returns: statements still in flight then fail.
    // So the tracked writes are settled before COMMIT.
    transaction: (fn) => db.transaction((tx) => InFlightWrites.settledWith((writes) => fn(tx, writes))),
    close: () => client.close(),
  };
}

async function openPostgres(url: string, schemaName: string, opts: OpenOptions): Promise<Database> {
  const common = {
    onnotice: () => {},
    connect_timeout: 10,
    // postgres.js waits 3^n / 100 s (up to 20 s) before the next connection attempt after n
    // failed ones in a row, and queries wait for that attempt: a few seconds into an outage every
    // request hung for tens of seconds instead of answering "database unreachable", and the
    // service stayed down that long after Postgres was back. Retry at most every half second.
    backoff: (attempt: number) => Math.min(0.05 * attempt, 0.5),
  } as const;
  // A single connection creates the schema and migrates under an advisory lock, so two
  // services starting together on one database do not both apply the same migration. A schema
  // that is current is only read: a role without CREATE or DDL rights opens it all the same.
  const boot = postgres(url, { ...common, max: 1 });
  try {
    const pending = await pendingMigrationsIn((text) => boot.unsafe(text), schemaName);
    if (pending.length && opts.migrate === false) throw new MigrationsPendingError(schemaName, pending);
    if (pending.length) {
      await boot.unsafe(`CREATE SCHEMA IF NOT EXISTS ${schemaName}`);
      await boot.unsafe(`SET search_path TO ${schemaName}`);
      await boot`SELECT pg_advisory_lock(hashtext(${'trainyard-migrate:' + schemaName}))`;
      try {
        await migratePostgres(drizzlePostgres(boot, { schema }), {
          migrationsFolder: MIGRATIONS_FOLDER,
          migrationsSchema: schemaName,
        });
      } finally {
        await boot`SELECT pg_advisory_unlock(hashtext(${'trainyard-migrate:' + schemaName}))`;
      }
    }
  } finally {
    await boot.end();
  }
  const poolOptions = {
    ...common,
    max: opts.maxConnections ?? 10,
    query_timeout: (opts.queryTimeoutMs ?? 0) / 1000,
    connection: { search_path: schemaName, application_name: 'trainyard' },
  };
  const openPool = () => preparingStatements(postgres(url, poolOptions));
  // Without a query timeout no connection is ever found silent: the plain pool.
  const pool = opts.queryTimeoutMs ? silentHostPool(openPool) : null;
  const client = pool?.client ?? openPool();
  const db = drizzlePostgres(client, { schema }) as unknown as Db;
  return {
    kind: 'postgres',
    db,
    schema: schemaName,
    location: redact(url),
    transaction: pipelinedTransactions(client, db),
    close: () => (pool ?? client).end({ timeout: 5 }),
  };
}

/** drizzle-kit's list of the migrations in migrations/, in order; `when` is what drizzle compares. */
export function migrationJournal(folder = MIGRATIONS_FOLDER): { tag: string; when: number }[] {
  const journal = JSON.parse(readFileSync(join(folder, 'meta/_journal.json'), 'utf8')) as { entries: { tag: string; when: number }[] };
  return journal.entries.map(({ tag, when }) => ({ tag, when }));
}

/**
 * The migrations a schema lacks, as drizzle's migrator decides: every one newer than the newest
 * it recorded (`lastApplied`: its created_at, null when it recorded none).
 */
export function pendingMigrations(journal: { tag: string; when: number }[], lastApplied: number | null): string[] {
  return journal.filter((m) => lastApplied === null || m.when > lastApplied).map((m) => m.tag);
}

/** Read-only: which migrations `schemaName` lacks (all of them when it has none or does not exist). */
async function pendingMigrationsIn(
  query: (text: string) => Promise<readonly Record<string, unknown>[]>,
  schemaName: string,
): Promise<string[]> {
  const [found] = await query(`SELECT to_regclass('${schemaName}.__drizzle_migrations') IS NOT NULL AS present`);
  let lastApplied: number | null = null;
  if (found?.present) {
    const [row] = await query(`SELECT max(created_at) AS last FROM ${schemaName}.__drizzle_migrations`);
    lastApplied = row?.last === null || row?.last === undefined ? null : Number(row.last);
  }
  return pendingMigrations(migrationJournal(), lastApplied);
}

/** Start-up with migrations off found a schema that lacks some. */
export class MigrationsPendingError extends Error {
  constructor(
    readonly schemaName: string,
    readonly pending: string[],
  ) {
    super(
      `schema "${schemaName}" lacks ${pending.length} migration(s) (${pending.join(', ')}) and TRAINYARD_MIGRATE=0 ` +
        `says this service does not apply them: run \`npm run db:migrate\` with DATABASE_URL set to the schema owner's ` +
        `connection (see infra/postgres-roles.sql), then start the service again`,
    );
    this.name = 'MigrationsPendingError';
  }
}

export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres (unparsable URL)';
  }
}

/**
 * What went wrong with the database, in the driver's words: drizzle wraps driver errors in
 * "Failed query: <sql> params: <values>", which says nothing about the cause and must not reach
 * clients (it quotes their data). Walks the causes down to the first that is not such a wrapper.
 */
export function databaseErrorMessage(err: unknown): string {
  let e: unknown = err;
  for (let i = 0; i < 5; i++) {
    const message = (e as { message?: unknown })?.message;
    const cause = (e as { cause?: unknown })?.cause;
    if (typeof message === 'string' && message.startsWith('Failed query:') && cause) {
      e = cause;
      continue;
    }
    return typeof message === 'string' && message ? message : String(e);
  }
  return String(e);
}

/** Rows of a raw `execute`, whichever driver ran it. */
export function rowsOf<T>(result: unknown): T[] {
  if (Array.isArray(result)) return result as T[];
  return ((result as { rows?: T[] }).rows ?? []) as T[];
}
