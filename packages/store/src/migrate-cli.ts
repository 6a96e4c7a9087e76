// `npm run db:migrate`: apply the pending migrations to the configured database and schema
// (DATABASE_URL, TRAINYARD_DB_SCHEMA), as a role allowed to change the schema: its owner. A
// service started with TRAINYARD_MIGRATE=0 then runs as a role that may only use the tables
// (infra/postgres-roles.sql grants what it needs).
import { storageFromEnv } from './config';
import { migrationJournal, openDatabase } from './database';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log(
    'usage: DATABASE_URL=postgres://OWNER@HOST/DB [TRAINYARD_DB_SCHEMA=trainyard] npm run db:migrate\n  applies the pending migrations (without DATABASE_URL: the PGlite database under TRAINYARD_DATA_DIR)',
  );
  process.exit(0);
}

const storage = storageFromEnv({ ...process.env, TRAINYARD_MIGRATE: '1' });
try {
  const database = await openDatabase({ ...storage, migrate: true });
  await database.close();
  console.log(
    `${database.kind} (${database.location}), schema ${database.schema}: migrations applied up to ${migrationJournal().at(-1)?.tag}`,
  );
} catch (err) {
  console.error(`db:migrate: ${(err as Error).message}`);
  process.exitCode = 1;
}
