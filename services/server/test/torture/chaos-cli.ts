// The torture run from the command line:
//   npx tsx services/server/test/torture/chaos-cli.ts --profile ci [--seed N] [--scenarios chaos,pglite,two] [--out report.json]
//   npm run torture                       (the full profile, every scenario)
// Prints the seed first (same seed → same schedule), a summary at the end, and exits 1 on any
// violation. Postgres: a private cluster it creates and destroys (so restarting Postgres
// disturbs nobody); without one, the shared TEST_DATABASE_URL without database restarts.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { PROFILES, postgresTarget, runChaos, runTwoInstances, summarize, type ScenarioReport } from './chaos';
import { randomSeed } from './prng';

const { values } = parseArgs({
  options: {
    profile: { type: 'string', default: 'ci' },
    seed: { type: 'string' },
    scenarios: { type: 'string' },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false },
    slots: { type: 'string' },
    'shared-postgres': { type: 'string' },
    'restart-shared-postgres': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
});

if (values.help) {
  console.log(`usage: chaos-cli.ts [--profile ci|medium|full] [--seed N] [--scenarios chaos,pglite,two] [--out FILE] [--keep]
  --shared-postgres URL          Postgres to fall back on when no private cluster can be made (default TEST_DATABASE_URL or postgres://postgres@127.0.0.1:5432/test)
  --restart-shared-postgres      with that fallback, restart the shared cluster too (disturbs everyone using it)
  --slots N                      GPU slots (default: the profile's for chaos/pglite, 1 or 2 from the seed for two)
  --keep                         keep data folders and schemas of a run with violations`);
  process.exit(0);
}

const base = PROFILES[values.profile!];
const slots = values.slots !== undefined ? Number(values.slots) : undefined;
const profile = base && slots ? { ...base, slots } : base;
if (!profile) {
  console.error(`unknown profile ${values.profile}; one of ${Object.keys(PROFILES).join(', ')}`);
  process.exit(2);
}
const seed = values.seed !== undefined ? Number(values.seed) : randomSeed();
if (!Number.isInteger(seed)) {
  console.error(`--seed must be an integer`);
  process.exit(2);
}
const scenarios = (values.scenarios ?? (profile.name === 'ci' ? 'chaos,two' : 'chaos,pglite,two')).split(',').map((s) => s.trim());
const log = (m: string) => console.error(m);
const command = `npx tsx services/server/test/torture/chaos-cli.ts --profile ${profile.name} --seed ${seed} --scenarios ${scenarios.join(',')}${slots ? ` --slots ${slots}` : ''}`;
console.error(`torture: seed ${seed}, profile ${profile.name}, scenarios ${scenarios.join(',')}\n  reproduce: ${command}`);

const started = Date.now();
const reports: ScenarioReport[] = [];
const needsPg = scenarios.some((s) => s === 'chaos' || s === 'two');
const { target, note } = needsPg
  ? await postgresTarget({
      sharedUrl: values['shared-postgres'] ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
      restartShared: values['restart-shared-postgres'],
      log,
    })
  : { target: null, note: null };
if (note) console.error(`!!! ${note}`);

const cleanup = async () => {
  await target?.cluster?.destroy();
};
process.on('SIGINT', () => {
  console.error('interrupted: cleaning up');
  void cleanup().finally(() => process.exit(130));
});

let failed = false;
try {
  for (const s of scenarios) {
    if (s === 'chaos' || s === 'two') {
      if (!target) {
        console.error(`!!! scenario ${s} SKIPPED: ${note}`);
        continue;
      }
      reports.push(
        s === 'chaos'
          ? await runChaos({ seed, profile, backend: 'postgres', postgres: target, log, keepOnFailure: values.keep })
          : await runTwoInstances({ seed, profile, postgres: target, log, keepOnFailure: values.keep, ...(slots ? { slots } : {}) }),
      );
    } else if (s === 'pglite') {
      reports.push(await runChaos({ seed, profile, backend: 'pglite', log, keepOnFailure: values.keep }));
    } else {
      console.error(`unknown scenario ${s}`);
      failed = true;
    }
  }
} catch (err) {
  console.error(`torture run aborted: ${(err as Error).stack}`);
  failed = true;
} finally {
  await cleanup();
}

const violations = reports.reduce((n, r) => n + r.violations.length, 0);
console.log(
  `\n== torture summary (${Math.round((Date.now() - started) / 1000)} s)\nreproduce: ${command}\n${summarize(reports)}\ntotal violations: ${violations}`,
);
if (values.out) {
  writeFileSync(
    values.out,
    JSON.stringify(
      {
        seed,
        profile: profile.name,
        scenarios,
        command,
        postgres: note ?? 'private cluster',
        durationMs: Date.now() - started,
        violations,
        reports,
      },
      null,
      2,
    ),
  );
  console.log(`report written to ${values.out}`);
}
process.exit(failed || violations ? 1 : 0);
