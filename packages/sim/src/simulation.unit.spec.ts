// The deterministic simulation (CI profile): many seeds, every invariant after every step.
// `npm run sim -- --seeds 20000` runs the full profile; a failing seed prints its replay command.
import { describe, expect, it } from 'vitest';
import { backfillPolicy, decideRecovery, decideRun, type SchedulingPolicy } from '@trainyard/domain';
import { describeViolation, simulate, World, type SimViolation } from '.';

const SEEDS = Number(process.env.TRAINYARD_SIM_SEEDS ?? 400);
// A limit sized to the seeds, not the suite's 180 s: on CI's 2 loaded cores a 120-step seed takes
// about 0.65 s (a profile of 15 seeds: the isolation check is 8 % of it, World.check 20 %, the
// lifecycle machine, the store and GC the rest), so 400 take about 260 s. 2 s a seed leaves room
// for a loaded machine and still ends a run that hangs.
const SEEDS_TIMEOUT_MS = Math.max(180_000, SEEDS * 2_000);

describe('deterministic simulation', () => {
  it(`${SEEDS} seeds, crashes anywhere: no invariant is ever violated`, { timeout: SEEDS_TIMEOUT_MS }, async () => {
    const failures: string[] = [];
    let crashes = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      // One or two whole GPUs; every third seed also a GPU in MIG mode (a mixed fleet).
      // Every fourth seed alice may hold one device at a time.
      const limits = seed % 4 === 1 ? [{ name: 'alice', maxGpus: 1, gpuHours: null, gpuHoursWindowHours: null, weight: 1 }] : [];
      // Every fifth seed preempts by fair share too.
      const fairSharePreemption = seed % 5 === 2;
      const r = await simulate({ seed, steps: 120, slots: 1 + (seed % 2), mig: seed % 3 === 0, limits, fairSharePreemption });
      crashes += r.crashes;
      if (r.violations.length)
        failures.push(
          `seed ${seed}: ${describeViolation(r.violations[0]!)} (replay: npm run sim -- --seed ${seed} --slots ${1 + (seed % 2)}${seed % 3 === 0 ? ' --mig' : ''}${fairSharePreemption ? ' --fair-share' : ''} --steps 120 --trace)`,
        );
    }
    expect(failures).toEqual([]);
    expect(crashes).toBeGreaterThan(SEEDS); // the chaos really happened
  });

  it('a seed replays exactly', async () => {
    const a = await simulate({ seed: 4242, steps: 150, slots: 2, trace: true });
    const b = await simulate({ seed: 4242, steps: 150, slots: 2, trace: true });
    expect(b.trace).toEqual(a.trace);
    expect(a.trace.length).toBeGreaterThan(50);
  });

  // The checker must be able to fail: plant bugs and watch it catch them.
  it('catches a queue that is not FIFO', async () => {
    const lifo: SchedulingPolicy = {
      name: 'newest first (planted bug)',
      schedule: (input) => backfillPolicy.schedule({ ...input, queue: [...input.queue].reverse() }),
    };
    const found = await firstViolation((seed) => simulate({ seed, steps: 150, slots: 1, policy: lifo }));
    expect(found?.invariant).toBe('fifo');
    expect(found?.message).toMatch(/FIFO/);
  });

  it('catches a scheduler that double-books a GPU', async () => {
    const greedy: SchedulingPolicy = {
      name: 'ignores holders (planted bug)',
      schedule: (input) => backfillPolicy.schedule({ ...input, devices: input.devices.map((d) => ({ ...d, holders: [] })) }),
    };
    const found = await firstViolation((seed) => simulate({ seed, steps: 150, slots: 2, policy: greedy }));
    // The in-memory store refuses the second holder as the database's constraint would.
    expect(found?.invariant).toBe('unexpected-error');
    expect(found?.message).toMatch(/ConstraintViolation: gpu\d+ already held exclusively/);
  });

  it('catches a recovery that starts a second trainer beside a live one', async () => {
    const careless: typeof decideRecovery = (task, facts) => (facts.trainerAlive ? { kind: 'launch' } : decideRecovery(task, facts));
    const found = await firstViolation((seed) => simulate({ seed, steps: 150, slots: 1, recovery: careless }));
    expect(found?.invariant).toBe('double-trainer');
  });

  it('catches a runner that loses an exit whose last lines the database refused', async () => {
    const found = await firstViolation((seed) => simulate({ seed, steps: 150, slots: 1, exitLostWithRefusedLines: true }));
    expect(found?.invariant).toBe('stuck');
    expect(found?.message).toMatch(/stuck in TRAINING/);
  });

  it('catches a run decider that lets a failed trainer go without recording its exit', async () => {
    const forgetful: typeof decideRun = (run, obs, options) => {
      const d = decideRun(run, obs, options);
      return obs.type === 'exited' && obs.exit.code !== 0 ? { ...d, commands: [] } : d;
    };
    const found = await firstViolation((seed) => simulate({ seed, steps: 150, slots: 1, runDecider: forgetful }));
    expect(found?.invariant).toBe('stuck');
    expect(found?.message).toMatch(/stuck in TRAINING/);
  });

  it("trainers' NUL-laden last lines are stored as U+FFFD with their exits, refused batches or not", async () => {
    const world = new World({ seed: 7, steps: 300, slots: 2, trace: true });
    const r = await world.run();
    expect(r.violations).toEqual([]);
    const stored = [...world.db.logs.values()].flatMap((lines) => [...lines.values()]);
    expect(stored).toContain('last\uFFFDline');
    expect(r.trace.some((l) => /with its last lines failed/.test(l))).toBe(true);
  });

  it('catches a recovery that fails tasks whose trainer still runs', async () => {
    const hasty: typeof decideRecovery = (task, facts) =>
      facts.trainerAlive ? { kind: 'failLost', message: 'assumed lost' } : decideRecovery(task, facts);
    const found = await firstViolation((seed) => simulate({ seed, steps: 150, slots: 1, recovery: hasty }));
    expect(found?.invariant).toBe('orphan-trainer');
    expect(found?.message).toMatch(/holds no device/);
  });
});

async function firstViolation(run: (seed: number) => Promise<{ violations: SimViolation[] }>): Promise<SimViolation | null> {
  for (let seed = 1; seed <= 200; seed++) {
    const r = await run(seed);
    if (r.violations.length) return r.violations[0]!;
  }
  return null;
}
