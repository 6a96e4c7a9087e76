// Where state lives, from the environment: DATABASE_URL selects Postgres; otherwise PGlite
// under TRAINYARD_DATA_DIR (default ./.trainyard). TRAINYARD_MIGRATE=0 runs as a role that
// may not change the schema: migrations are applied by its owner (`npm run db:migrate`).
import { join, resolve } from 'node:path';
import type { OpenOptions } from './database';

export function storageFromEnv(env: NodeJS.ProcessEnv = process.env): OpenOptions & { dataRoot: string } {
  const dataRoot = resolve(env.TRAINYARD_DATA_DIR || '.trainyard');
  return {
    url: env.DATABASE_URL || undefined,
    dataDir: join(dataRoot, 'pglite'),
    schema: env.TRAINYARD_DB_SCHEMA || undefined,
    migrate: migrateFromEnv(env.TRAINYARD_MIGRATE),
    queryTimeoutMs: queryTimeoutFromEnv(env.TRAINYARD_DB_QUERY_TIMEOUT_MS),
    dataRoot,
  };
}

/**
 * The file a running service holds in its data folder (its pid and start time): one service per
 * folder, and, on PGlite, the sign that another process must not open the database now.
 */
export function instanceLockFile(dataRoot: string): string {
  return join(dataRoot, 'runs', '.instance.lock');
}

/**
 * How long a Postgres statement may go unanswered (see OpenOptions.queryTimeoutMs): far above any
 * statement the service runs (the log is read in pages), far below the quarter of an hour TCP
 * takes by default to give up on a database host that went silent.
 */
export const DEFAULT_QUERY_TIMEOUT_MS = 120_000;

function queryTimeoutFromEnv(raw: string | undefined): number {
  if (raw === undefined || raw === '') return DEFAULT_QUERY_TIMEOUT_MS;
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms < 0 || ms > 24 * 3_600_000)
    throw new Error(
      `TRAINYARD_DB_QUERY_TIMEOUT_MS=${JSON.stringify(raw)}: must be a whole number of milliseconds up to a day, or 0 for no limit`,
    );
  return ms;
}

function migrateFromEnv(raw: string | undefined): boolean {
  if (raw === undefined || raw === '' || raw === '1') return true;
  if (raw === '0') return false;
  throw new Error(
    `TRAINYARD_MIGRATE=${JSON.stringify(raw)}: must be 1 (apply pending migrations at start-up) or 0 (only check that they are applied)`,
  );
}
