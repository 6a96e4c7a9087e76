// Several instances on one database, simulated (lease-world.ts): the real commands with their
// fence, the domain's lease, recovery and leftover decisions. Invariant: no task is run by two
// instances at once. Many seeds of stalls, crashes and restarts keep it; each planted bug trips
// it, and the spec names the invariant that fired.
import { describe, expect, it } from 'vitest';
import { simulateLeases, type LeaseSimOptions, type LeaseViolation } from '.';

const SEEDS = Math.ceil(Number(process.env.TRAINYARD_SIM_SEEDS ?? 400) / 10);

async function firstViolation(opts: Omit<LeaseSimOptions, 'seed'>): Promise<LeaseViolation | null> {
  for (let seed = 1; seed <= 200; seed++) {
    const r = await simulateLeases({ ...opts, seed });
    if (r.violations.length) return r.violations[0]!;
  }
  return null;
}

describe('instances and their leases (simulation)', () => {
  it(`${SEEDS} seeds of stalls, crashes and restarts: no task is run by two instances at once`, async () => {
    const failures: string[] = [];
    let takeovers = 0;
    let leftovers = 0;
    let disowned = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const r = await simulateLeases({ seed, steps: 120, slots: 1 + (seed % 2) });
      takeovers += r.takeovers;
      leftovers += r.leftoversStopped;
      disowned += r.disowned;
      if (r.violations.length) failures.push(`seed ${seed}: [${r.violations[0]!.invariant}] ${r.violations[0]!.message}`);
    }
    expect(failures).toEqual([]);
    // The chaos really happened: leases taken over, late instances stopping their runs, leftovers stopped at restarts.
    expect(takeovers).toBeGreaterThan(SEEDS / 4);
    expect(disowned).toBeGreaterThan(0);
    expect(leftovers).toBeGreaterThan(0);
  });

  it('two-instances: a peer that judges with a shorter term than the others takes tasks from a live instance', async () => {
    const found = await firstViolation({ steps: 150, slots: 1, shortTermJudge: 'B' });
    expect(found?.invariant).toBe('two-instances');
    expect(found?.message).toMatch(/^task t\d+ is run by [ABC] and [ABC] at once/);
  });

  it('two-instances: a restart that leaves its previous process’s trainers running after a peer took their tasks', async () => {
    const found = await firstViolation({ steps: 150, slots: 1, decideLeftovers: () => [] });
    expect(found?.invariant).toBe('two-instances');
    expect(found?.message).toMatch(/^task t\d+ is run by [ABC] and [ABC] at once/);
  });
});
