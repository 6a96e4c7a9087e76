// The event log's immutability must not rest on a trigger its user can drop. The schema's owner
// migrates (`npm run db:migrate`) and grants (infra/postgres-roles.sql); the service runs as a
// role that may read and append to `events` and nothing more. That role runs a task, survives a
// restart that refolds the read models, and is refused UPDATE, DELETE and TRUNCATE on the log
// and DROP or DISABLE of its trigger by the database's privileges, not by the trigger.
// Postgres only by nature: in CI (or with TRAINYARD_REQUIRE_POSTGRES=1) a missing Postgres fails.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { CI_STRICT, freshSchemaName, rawClient } from '@trainyard/store/testing';
import { eventually, killRunsUnder, REPO_ROOT, simulated, startServer, type RunningServer } from './harness';

const run = promisify(execFile);
const ownerUrl = inject('postgresUrl');
const required = CI_STRICT;

/** The same database as `url`, connecting as `role` (the test Postgres trusts local roles). */
function asRole(url: string, role: string): string {
  const u = new URL(url);
  u.username = role;
  u.password = '';
  return u.toString();
}

/** The Postgres error (code and message) a statement fails with, or null if it succeeds. */
async function refusal(sql: postgres.Sql, statement: string): Promise<{ code: string; message: string } | null> {
  try {
    await sql.unsafe(statement);
    return null;
  } catch (err) {
    const e = err as { code?: string; message: string };
    return { code: e.code ?? '?', message: e.message };
  }
}

describe.skipIf(!ownerUrl && !required)('the service as a role that may only read and append to the log (Postgres)', () => {
  const schema = freshSchemaName();
  const role = `trainyard_app_${randomBytes(4).toString('hex')}`;
  let owner: postgres.Sql;
  let s: RunningServer | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), 'trainyard-e2e-role-'));

  beforeAll(async () => {
    if (!ownerUrl) throw new Error('Postgres is not reachable, and this run requires it (CI or TRAINYARD_REQUIRE_POSTGRES=1)');
    owner = postgres(ownerUrl, { max: 1, onnotice: () => {} });
    await owner.unsafe(`CREATE ROLE ${role} LOGIN`);
  });

  afterAll(async () => {
    if (s) await s.stop('SIGKILL');
    killRunsUnder(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
    if (!owner) return;
    await owner.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await owner.unsafe(`DROP ROLE IF EXISTS ${role}`);
    await owner.end();
  });

  const migrateEnv = () => ({ ...process.env, DATABASE_URL: ownerUrl!, TRAINYARD_DB_SCHEMA: schema });
  const appBackend = () => ({ kind: 'postgres' as const, url: asRole(ownerUrl!, role) });

  it('refuses to start on a schema its owner has not migrated, saying what to run', async () => {
    const err = await startServer({ backend: appBackend(), schema, dataDir, env: { TRAINYARD_MIGRATE: '0' } }).then(
      (server) => {
        s = server;
        return null;
      },
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/server exited with 1 before listening/);
    expect(err?.message).toContain('npm run db:migrate');
    expect(err?.message).toContain('0000_event_log_and_projections');
  });

  it('migrated and granted by the owner, runs a task, restarts and refolds its read models', async () => {
    const migrated = await run(process.execPath, ['--import', 'tsx', 'packages/store/src/migrate-cli.ts'], {
      cwd: REPO_ROOT,
      env: migrateEnv(),
    });
    expect(migrated.stdout).toContain(`schema ${schema}: migrations applied`);
    await run(
      'psql',
      [
        ownerUrl!,
        '-v',
        'ON_ERROR_STOP=1',
        '-v',
        `schema=${schema}`,
        '-v',
        `role=${role}`,
        '-f',
        join(REPO_ROOT, 'infra/postgres-roles.sql'),
      ],
      {
        cwd: REPO_ROOT,
      },
    );

    s = await startServer({ backend: appBackend(), schema, dataDir, env: { TRAINYARD_MIGRATE: '0' } });
    const first = await s.client.tasks.create.mutate(simulated({ steps: 3, stepMs: 20 }, { name: 'as-app-role' }));
    await eventually(async () => (await s!.client.tasks.get.query({ id: first.id })).status === 'COMPLETED', 'the task to complete');

    // A fold version other than the code's makes start-up refold every read model from the log.
    await owner.unsafe(`UPDATE ${schema}.projection_versions SET version = version + 1000`);
    s = await s.restart();
    expect(s.output.join('\n')).toMatch(/read models refolded from the log/);
    expect((await s.client.tasks.get.query({ id: first.id })).status).toBe('COMPLETED');
    const second = await s.client.tasks.create.mutate(simulated({ steps: 2, stepMs: 20 }, { name: 'after-restart' }));
    await eventually(
      async () => (await s!.client.tasks.get.query({ id: second.id })).status === 'COMPLETED',
      'the second task to complete',
    );
    const events = await s.client.events.list.query({ taskId: first.id });
    expect(events.events.map((e) => e.type)).toContain('TaskCompleted');

    // `npm run rebuild` (compare the read models with the log) works as that role too.
    const rebuilt = await run(process.execPath, ['--import', 'tsx', 'packages/store/src/rebuild-cli.ts'], {
      cwd: REPO_ROOT,
      env: { ...migrateEnv(), DATABASE_URL: appBackend().url, TRAINYARD_MIGRATE: '0' },
    });
    expect(rebuilt.stdout).toContain('read models match the log');
  });

  it('as that role the log cannot be changed, and its trigger cannot be dropped or disabled', async () => {
    const app = rawClient(asRole(ownerUrl!, role), schema);
    try {
      const [row] = await app.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM events`);
      expect(row!.n).toBeGreaterThan(0);
      const denied = { code: '42501', message: expect.stringMatching(/^permission denied for table events$/) };
      expect(await refusal(app, `UPDATE events SET type = 'Forged'`)).toEqual(denied);
      expect(await refusal(app, `DELETE FROM events`)).toEqual(denied);
      expect(await refusal(app, `TRUNCATE events`)).toEqual(denied);
      const notOwner = { code: '42501', message: expect.stringMatching(/^must be owner of (table|relation) events$/) };
      expect(await refusal(app, `DROP TRIGGER events_no_update_delete ON events`)).toEqual(notOwner);
      expect(await refusal(app, `ALTER TABLE events DISABLE TRIGGER ALL`)).toEqual(notOwner);
      expect(await refusal(app, `DROP TABLE events`)).toEqual(notOwner);
      // Nor can it rewrite the migrations record or add objects to the schema.
      expect(await refusal(app, `DELETE FROM __drizzle_migrations`)).toMatchObject({ code: '42501' });
      expect(await refusal(app, `CREATE TABLE ${schema}.shadow (x int)`)).toMatchObject({ code: '42501' });
    } finally {
      await app.end();
    }
  });
});
