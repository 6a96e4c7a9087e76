// Two services (own data folders, own runner ids) on one Postgres schema, creates and cancels
// sent to either at random (sometimes the same key to both at once), an instance SIGKILLed and
// restarted now and then (twice in the ci profile), with one and with two GPU slots: never two
// holders of a slot, never two trainers for one task, no acknowledged create lost, every
// acknowledged cancel ends CANCELLED; plus every invariant of the torture suite.
// The seed is random and printed; replay with TORTURE_SEED=<seed>, or
//   npx tsx services/server/test/torture/chaos-cli.ts --profile ci --seed <seed> --scenarios two --slots <1|2>
import { describe, expect, it } from 'vitest';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { PROFILES, runTwoInstances, summarize } from './chaos';
import { randomSeed } from './prng';

const seed = process.env.TORTURE_SEED ? Number(process.env.TORTURE_SEED) : randomSeed();
const postgres = backends().find((b) => b.kind === 'postgres')!;

describe.skipIf(!backendAvailable(postgres))('two instances on one Postgres schema', () => {
  for (const slots of [1, 2]) {
    it(`${slots} slot(s): no double start, no lost command`, async () => {
      console.log(
        `two-instances seed ${seed}, ${slots} slot(s): replay with TORTURE_SEED=${seed}, or chaos-cli.ts --profile ci --seed ${seed} --scenarios two --slots ${slots}`,
      );
      const lines: string[] = [];
      const report = await runTwoInstances({
        seed,
        slots,
        profile: PROFILES.ci!,
        postgres: { url: postgres.url!, cluster: null, control: null },
        log: (m) => void lines.push(m),
      });
      console.log(summarize([report]));
      if (report.violations.length) console.log(lines.join('\n'));
      expect(report.violations).toEqual([]);
      expect(report.tasks.acknowledged).toBe(PROFILES.ci!.two.creates);
      // The plan kills (chaos.unit.spec.ts); this says the kills happened and were survived.
      expect(report.serverKills).toBe(PROFILES.ci!.two.kills);
      expect(report.serverKills).toBeGreaterThanOrEqual(1);
    });
  }
});
