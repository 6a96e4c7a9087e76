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

function migrateFromEnv(raw: string | undefined): boolean {
  if (raw === undefined || raw === '' || raw === '1') return true;
  if (raw === '0') return false;
  throw new Error(
    `TRAINYARD_MIGRATE=${JSON.stringify(raw)}: must be 1 (apply pending migrations at start-up) or 0 (only check that they are applied)`,
  );
}
