// Probes the test Postgres once for the whole run. Without one, the Postgres half of the
// store/service specs is skipped, loudly; with TRAINYARD_REQUIRE_POSTGRES=1 (set by .ci/run)
// a missing Postgres fails the run instead.
import postgres from 'postgres';
import type { TestProject } from 'vitest/node';

export const DEFAULT_TEST_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';

import './support';

export default async function setup(project: TestProject) {
  const url = process.env.TEST_DATABASE_URL || DEFAULT_TEST_DATABASE_URL;
  const sql = postgres(url, { max: 1, connect_timeout: 3, onnotice: () => {} });
  let reachable: string | null = null;
  try {
    await sql`SELECT 1`;
    reachable = url;
  } catch (err) {
    const msg = `Postgres at ${url} is not reachable (${(err as Error).message}).`;
    if (process.env.TRAINYARD_REQUIRE_POSTGRES === '1') {
      throw new Error(`${msg} TRAINYARD_REQUIRE_POSTGRES=1, so this run fails instead of skipping.`, { cause: err });
    }
    const bar = '!'.repeat(100);
    console.warn(
      `\n${bar}\n!! ${msg}\n!! THE POSTGRES HALF OF THE STORE AND SERVICE SPECS IS SKIPPED: only PGlite was tested.\n!! Start Postgres (see infra/) or set TEST_DATABASE_URL to run it.\n${bar}\n`,
    );
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
  project.provide('postgresUrl', reachable);
}
