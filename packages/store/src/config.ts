// Where state lives, from the environment: DATABASE_URL selects Postgres; otherwise PGlite
// under TRAINYARD_DATA_DIR (default ./.trainyard).
import { join, resolve } from 'node:path';
import type { OpenOptions } from './database';

export function storageFromEnv(env: NodeJS.ProcessEnv = process.env): OpenOptions & { dataRoot: string } {
  const dataRoot = resolve(env.TRAINYARD_DATA_DIR || '.trainyard');
  return {
    url: env.DATABASE_URL || undefined,
    dataDir: join(dataRoot, 'pglite'),
    schema: env.TRAINYARD_DB_SCHEMA || undefined,
    dataRoot,
  };
}
