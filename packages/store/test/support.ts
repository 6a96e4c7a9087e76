// Test databases: a fresh in-memory PGlite, or a fresh schema on the test Postgres (dropped
// afterwards), both migrated with the real migrations.
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { inject } from 'vitest';
import { DEFAULT_RESOURCES, uniformInventory, type TaskSpec } from '@trainyard/domain';
import { configureDevices, openDatabase, TaskStore, type Database, type StorageKind } from '../src';

/** A task spec for store specs: a small model, owner alice, fields overridable. */
export const taskSpec = (name: string, over: Partial<TaskSpec> = {}): TaskSpec => ({
  name,
  model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
  datasetPath: 'data/train.jsonl',
  outputDir: `out/${name}`,
  timeoutMs: 60_000,
  resources: { ...DEFAULT_RESOURCES },
  owner: 'alice',
  config: {
    epochs: 1,
    batchSize: 1,
    gradientAccumulation: 16,
    learningRate: 2e-4,
    maxLength: 512,
    load8bit: false,
    load4bit: false,
    loraRank: 8,
    loraAlpha: 16,
  },
  ...over,
});

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string | null;
  }
}

export interface Backend {
  kind: StorageKind;
  /** null when this backend cannot run here (Postgres not reachable). */
  url: string | null;
}

/** In CI (`CI` set, as .ci/run and CI services set it, or TRAINYARD_REQUIRE_POSTGRES=1) a missing test dependency fails the run. */
export const CI_STRICT = Boolean(process.env.CI) || process.env.TRAINYARD_REQUIRE_POSTGRES === '1';

/**
 * Say loudly that specs are skipped because `what` is missing here; in CI, throw instead, so a
 * run cannot pass by skipping them.
 */
export function skipLoudlyOrFail(what: string, how: string): void {
  if (CI_STRICT) throw new Error(`${what}; in CI this is a failure, not a skip (${how})`);
  const bar = '!'.repeat(100);
  console.warn(`\n${bar}\n!! ${what}: SKIPPED (${how})\n${bar}\n`);
}

export function backends(): Backend[] {
  return [
    { kind: 'pglite', url: null },
    { kind: 'postgres', url: inject('postgresUrl') },
  ];
}

/**
 * Whether specs on this backend can run here. Every `describe.skipIf(!backendAvailable(…))`
 * goes through this one check, so in CI a missing Postgres fails those specs instead of
 * skipping them (the global setup also fails the run first).
 */
export function backendAvailable(b: Backend): boolean {
  if (b.kind === 'pglite' || b.url !== null) return true;
  if (CI_STRICT) throw new Error('the Postgres backend is not reachable; in CI this is a failure, not a skip (bash infra/postgres-up.sh)');
  return false;
}

export function freshSchemaName(): string {
  return `t_${randomBytes(6).toString('hex')}`;
}

export interface TestDatabase extends Database {
  /** Open another connection (pool) to the same database and schema (Postgres only). */
  openAnother(): Promise<Database>;
  /** Admin connection string for the same database (Postgres only). */
  url: string | null;
}

export async function openTestDatabase(b: Backend): Promise<TestDatabase> {
  if (b.kind === 'pglite') {
    const db = await openDatabase({});
    return {
      ...db,
      url: null,
      openAnother: () => Promise.reject(new Error('PGlite is a single connection')),
    };
  }
  if (!b.url) throw new Error('Postgres is not available');
  const url = b.url;
  const schema = freshSchemaName();
  const db = await openDatabase({ url, schema });
  const others: Database[] = [];
  return {
    ...db,
    url,
    openAnother: async () => {
      const d = await openDatabase({ url, schema, migrate: false });
      others.push(d);
      return d;
    },
    close: async () => {
      for (const o of others) await o.close();
      await db.close();
      await dropSchema(url, schema);
    },
  };
}

/** A fresh test database with one GPU, and a store on it: what most store specs start from. */
export async function openTestStore(b: Backend): Promise<{ t: TestDatabase; store: TaskStore }> {
  const t = await openTestDatabase(b);
  await configureDevices(t.db, uniformInventory(1));
  return { t, store: new TaskStore(t, { runnerId: 'r1' }) };
}

export async function dropSchema(url: string, schema: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** A raw postgres.js client on the schema, for specs that drive transactions by hand. */
export function rawClient(url: string, schema: string) {
  return postgres(url, { max: 1, onnotice: () => {}, connection: { search_path: schema } });
}

export { startSilencingProxy, type SilencingProxy } from './silencing-proxy';
export { seedMigratedPglite } from './pglite-template';
