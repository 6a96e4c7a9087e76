// A PGlite data folder already initialised and migrated, copied into a spec's fresh data folder
// instead of letting the service create one. Creating a PGlite database runs initdb (about two
// seconds here) and then every migration; a service on PGlite started by an e2e spec paid both
// at each start on a new folder. The template is made once by the real openDatabase, for the
// migrations, the PGlite version and the store's set-up at hand (all in its name), and kept in the
// temp folder.
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { MIGRATIONS_FOLDER, openDatabase, storageFromEnv } from '../src';

function templateKey(): string {
  const hash = createHash('sha256');
  const pglite = createRequire(import.meta.url).resolve('@electric-sql/pglite');
  hash.update(readFileSync(join(dirname(pglite), '../package.json')));
  // How the service sets up a PGlite database before migrating it.
  hash.update(readFileSync(join(import.meta.dirname, '../src/database.ts')));
  for (const folder of [MIGRATIONS_FOLDER, join(MIGRATIONS_FOLDER, 'meta')])
    for (const name of readdirSync(folder).sort()) {
      if (name === 'meta') continue;
      hash.update(name).update(readFileSync(join(folder, name)));
    }
  return hash.digest('hex').slice(0, 16);
}

let made: Promise<string> | null = null;

/** The folder of a migrated PGlite database (schema `trainyard`), made on first use. */
function migratedPgliteTemplate(): Promise<string> {
  made ??= (async () => {
    const path = join(tmpdir(), `trainyard-pglite-template-${templateKey()}`);
    if (existsSync(path)) return path;
    // Made aside and renamed into place: a spec in another worker never sees half a template.
    const making = mkdtempSync(`${path}-making-`);
    try {
      const db = await openDatabase({ dataDir: making });
      await db.close();
      try {
        renameSync(making, path);
      } catch (err) {
        // Another worker put its template there first: the same, as the name says.
        if (!existsSync(path)) throw err;
      }
    } finally {
      rmSync(making, { recursive: true, force: true });
    }
    return path;
  })();
  return made;
}

/**
 * Put a migrated PGlite database where a service (or the CLI) given `dataRoot` as
 * TRAINYARD_DATA_DIR opens it, unless it has one there already.
 */
export async function seedMigratedPglite(dataRoot: string): Promise<void> {
  const dataDir = storageFromEnv({ TRAINYARD_DATA_DIR: dataRoot }).dataDir!;
  if (existsSync(dataDir)) return;
  cpSync(await migratedPgliteTemplate(), dataDir, { recursive: true });
}
