// `npm run sim -- --seeds 5000 [--from 1] [--steps 120] [--slots 1] [--mig] [--fair-share]`: run many seeds, print a
// failing seed with its trace; `--seed N --trace` replays one seed exactly.
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { describeViolation, simulate, type SimResult } from './world';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '1000' },
    from: { type: 'string', default: '1' },
    seed: { type: 'string' },
    steps: { type: 'string', default: '150' },
    slots: { type: 'string' },
    mig: { type: 'boolean' },
    'fair-share': { type: 'boolean' },
    trace: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});

const steps = Number(values.steps);
const seeds = values.seed ? [Number(values.seed)] : Array.from({ length: Number(values.seeds) }, (_, i) => Number(values.from) + i);
const started = performance.now();
const totals = {
  seeds: 0,
  steps: 0,
  tasks: 0,
  events: 0,
  crashes: 0,
  crashesInTransaction: 0,
  crashesAfterSpawn: 0,
  restarts: 0,
  trainerKills: 0,
  vanished: 0,
  violations: 0,
};
const failing: SimResult[] = [];
for (const seed of seeds) {
  // Alternate one and two whole GPUs, and every third seed a GPU in MIG mode, unless told.
  const slots = values.slots ? Number(values.slots) : 1 + (seed % 2);
  const mig = values.mig ?? (values.slots ? false : seed % 3 === 0);
  // Every fifth seed (2, 7, …) also preempts by fair share, as the spec's profile, unless told.
  const fairSharePreemption = values['fair-share'] ?? seed % 5 === 2;
  const r = await simulate({ seed, steps, slots, mig, fairSharePreemption, trace: values.trace || seeds.length === 1 });
  totals.seeds++;
  for (const k of [
    'steps',
    'tasks',
    'events',
    'crashes',
    'crashesInTransaction',
    'crashesAfterSpawn',
    'restarts',
    'trainerKills',
    'vanished',
  ] as const)
    totals[k] += r[k];
  if (r.violations.length) {
    totals.violations += r.violations.length;
    failing.push(r);
    console.log(
      `seed ${seed} (slots ${slots}${mig ? ', mig' : ''}) FAILED:\n  ${r.violations.map(describeViolation).join('\n  ')}\n  replay: npm run sim -- --seed ${seed} --slots ${slots}${mig ? ' --mig' : ''}${fairSharePreemption ? ' --fair-share' : ''} --steps ${steps} --trace`,
    );
    if (values.trace || seeds.length === 1) console.log(r.trace.join('\n'));
    if (failing.length >= 5) break;
  }
}
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ ...totals, seconds: Math.round(seconds * 10) / 10 }));
if (values.out)
  writeFileSync(
    values.out,
    JSON.stringify(
      { ...totals, seconds, failing: failing.map((f) => ({ seed: f.seed, violations: f.violations.map(describeViolation) })) },
      null,
      2,
    ),
  );
process.exitCode = failing.length ? 1 : 0;
