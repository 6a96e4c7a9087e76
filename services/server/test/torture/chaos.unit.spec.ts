// The torture plans are pure functions of the seed: what a profile promises is a property of the
// plan, checked here without starting anything.
import { describe, expect, it } from 'vitest';
import { planTwo, PROFILES } from './chaos';

describe('planTwo (the two-instance schedule)', () => {
  const ci = PROFILES.ci!.two;

  it('given the ci profile, every seed plans at least one SIGKILL of an instance', () => {
    for (let seed = 1; seed <= 500; seed++) {
      const kills = planTwo(seed, ci, 2).filter((a) => a.kind === 'kill-server');
      expect(kills.length).toBe(ci.kills);
      expect(kills.length).toBeGreaterThanOrEqual(1);
    }
  });

  it('given a seed, each kill targets one of the two instances inside the schedule, and the same seed plans the same', () => {
    const plan = planTwo(7, ci, 2);
    for (const a of plan.filter((x) => x.kind === 'kill-server')) {
      expect(a.kind === 'kill-server' && [0, 1].includes(a.server)).toBe(true);
      expect(a.at).toBeGreaterThanOrEqual(0);
      expect(a.at).toBeLessThanOrEqual(ci.scheduleMs);
    }
    expect(planTwo(7, ci, 2)).toEqual(plan);
  });

  it('given a profile with no kills, none is planned', () => {
    expect(planTwo(1, { ...ci, kills: 0 }, 2).some((a) => a.kind === 'kill-server')).toBe(false);
  });
});
