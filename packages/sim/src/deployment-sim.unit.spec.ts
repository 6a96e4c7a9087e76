// The deployments-and-training simulation: across seeds the honest decisions never promise a
// device more memory than it has (a sleeping deployment counted free only once its release is
// observed), and they exercise sleep, stop, wake and training; a planted bug (counting a
// deployment free as soon as it sleeps) trips the `device-memory` invariant.
import { describe, expect, it } from 'vitest';
import { simulateDeployments } from './deployment-sim';

describe('deployments and training in the simulation', () => {
  it('given the real decisions, when 40 seeds run, then no device is ever promised more memory than it has, and every path is taken', () => {
    const totals = { slept: 0, stopped: 0, woken: 0, tasksRun: 0, deployments: 0 };
    for (let seed = 1; seed <= 40; seed++) {
      const r = simulateDeployments({ seed });
      expect(r.violations, `seed ${seed}`).toEqual([]);
      for (const k of Object.keys(totals) as (keyof typeof totals)[]) totals[k] += r.counts[k];
    }
    expect(totals.slept).toBeGreaterThan(0);
    expect(totals.stopped).toBeGreaterThan(0);
    expect(totals.woken).toBeGreaterThan(0);
    expect(totals.tasksRun).toBeGreaterThan(0);
  });

  it('given a planted bug that counts a sleeping deployment free before its release is seen, then device-memory fires', () => {
    let fired = null;
    for (let seed = 1; seed <= 100 && !fired; seed++) fired = simulateDeployments({ seed, releaseOnSleep: true }).violations[0] ?? null;
    expect(fired).toMatchObject({ invariant: 'device-memory', message: expect.stringMatching(/held by deployments \(dep-\d+ SLEEPING/) });
  });
});
