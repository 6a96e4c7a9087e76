// Start-up with migrations off (TRAINYARD_MIGRATE=0, a role that may not change the schema):
// a schema lacking any migration is refused with the migrations named; a current one opens
// without a single DDL statement.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { backendAvailable, backends, dropSchema, freshSchemaName, rawClient } from '../test/support';
import { migrationJournal, MigrationsPendingError, openDatabase, pendingMigrations, type OpenOptions } from './database';

describe('pending migrations', () => {
  const journal = [
    { tag: '0000_a', when: 100 },
    { tag: '0001_b', when: 200 },
  ];
  it('are those newer than the newest the schema recorded, all of them when it recorded none', () => {
    expect(pendingMigrations(journal, null)).toEqual(['0000_a', '0001_b']);
    expect(pendingMigrations(journal, 100)).toEqual(['0001_b']);
    expect(pendingMigrations(journal, 200)).toEqual([]);
  });
});

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`opening with migrations off on ${backend.kind}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'trainyard-migrations-'));
    const schema = freshSchemaName();
    const where: OpenOptions = backend.kind === 'postgres' ? { url: backend.url!, schema } : { dataDir: join(dir, 'pglite'), schema };
    const tags = migrationJournal().map((m) => m.tag);
    afterAll(async () => {
      rmSync(dir, { recursive: true, force: true });
      if (backend.url) await dropSchema(backend.url, schema);
    });

    it('refuses a schema that was never migrated, naming every migration, and creates nothing', async () => {
      const err = await openDatabase({ ...where, migrate: false }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(MigrationsPendingError);
      expect((err as Error).message).toContain('npm run db:migrate');
      expect((err as MigrationsPendingError).pending).toEqual(tags);
      if (backend.url) {
        const sql = rawClient(backend.url, 'public');
        const [row] = await sql`SELECT to_regnamespace(${schema}) AS ns`;
        await sql.end();
        expect(row!.ns).toBeNull();
      }
    });

    it('opens a schema its owner migrated; refuses it again once a newer migration is missing', async () => {
      await (await openDatabase(where)).close();
      const current = await openDatabase({ ...where, migrate: false });
      // A release with a migration this schema lacks: the newest recorded one is forgotten.
      await current.db.execute(`DELETE FROM __drizzle_migrations WHERE created_at = (SELECT max(created_at) FROM __drizzle_migrations)`);
      await current.close();
      const err = await openDatabase({ ...where, migrate: false }).then(
        () => null,
        (e: unknown) => e,
      );
      expect((err as MigrationsPendingError).pending).toEqual(tags.slice(-1));
    });
  });
}
