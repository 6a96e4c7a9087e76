// The torture run, ci profile (see chaos.ts and docs/RELIABILITY.md): the real server on
// Postgres, SIGKILLed at random moments and restarted, trainers SIGKILLed, Postgres itself
// restarted (a private cluster the run creates, so the shared one is not disturbed), with every
// invariant checked after each step; then the same, smaller, on PGlite (no database restarts).
// The seed is random and printed; replay with TORTURE_SEED=<seed>, or
//   npx tsx services/server/test/torture/chaos-cli.ts --profile ci --seed <seed> --scenarios chaos,pglite
import { describe, expect, it } from 'vitest';
import { backendAvailable, backends, skipLoudlyOrFail } from '@trainyard/store/testing';
import { postgresTarget, PROFILES, runChaos, summarize } from './chaos';
import { randomSeed } from './prng';

const seed = process.env.TORTURE_SEED ? Number(process.env.TORTURE_SEED) : randomSeed();
const postgres = backends().find((b) => b.kind === 'postgres')!;

function collector() {
  const lines: string[] = [];
  return { lines, log: (m: string) => void lines.push(m) };
}

describe('torture, ci profile', () => {
  it.skipIf(!backendAvailable(postgres))(
    'on Postgres: service kills, trainer kills, a Postgres restart; every invariant holds',
    async () => {
      console.log(`torture seed ${seed}: replay with TORTURE_SEED=${seed}`);
      const { lines, log } = collector();
      const { target, note } = await postgresTarget({ sharedUrl: postgres.url, log });
      if (note) skipLoudlyOrFail(`${note}: the database-restart part of the torture run cannot run`, 'install postgresql (initdb, pg_ctl)');
      try {
        const report = await runChaos({ seed, profile: PROFILES.ci!, backend: 'postgres', postgres: target!, log });
        console.log(summarize([report]));
        if (report.violations.length) console.log(lines.join('\n'));
        expect(report.violations).toEqual([]);
        expect(report.serverKills).toBeGreaterThanOrEqual(PROFILES.ci!.serverKills); // a database outage may kill the service once more
        expect(report.tasks.acknowledged).toBe(PROFILES.ci!.tasks);
        if (target!.control) expect(report.dbRestarts).toBe(PROFILES.ci!.dbRestarts);
      } finally {
        await target?.cluster?.destroy();
      }
    },
  );

  it('on PGlite: service kills and trainer kills; every invariant holds', async () => {
    console.log(`torture seed ${seed}: replay with TORTURE_SEED=${seed}`);
    const { lines, log } = collector();
    const report = await runChaos({ seed, profile: PROFILES.ci!, backend: 'pglite', log });
    console.log(summarize([report]));
    if (report.violations.length) console.log(lines.join('\n'));
    expect(report.violations).toEqual([]);
    expect(report.serverKills).toBeGreaterThanOrEqual(PROFILES.ci!.pglite.serverKills);
  });
});
