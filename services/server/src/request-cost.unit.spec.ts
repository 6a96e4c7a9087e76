// What one request may ask for at once: each call's cost and the budget of a batch.
import { describe, expect, it } from 'vitest';
import { callCost, overBudget, REPLAY_COST, REQUEST_BUDGET } from './request-cost';

describe('request cost', () => {
  it('ordinary calls cost 1; replay, long event pages and long log pages cost more', () => {
    expect(callCost('tasks.list', { limit: 200 })).toBe(1);
    expect(callCost('events.replay', { taskId: 't' })).toBe(REPLAY_COST);
    expect(callCost('events.list', undefined)).toBe(1);
    expect(callCost('events.list', { limit: 1000 })).toBe(4);
    expect(callCost('tasks.logs', { id: 't' })).toBe(1);
    expect(callCost('tasks.logs', { id: 't', limit: 5000 })).toBe(5);
    expect(callCost('tasks.metrics', { id: 't' })).toBe(2);
    expect(callCost('tasks.outputs', { id: 't' })).toBe(4);
    expect(callCost('tasks.metrics', { id: 't', limit: 5000 })).toBe(4);
    expect(callCost('tasks.metrics', { id: 't', limit: 0 })).toBe(1);
    // Input the procedure refuses costs 1, so its caller gets the field error, not a refused batch.
    expect(callCost('tasks.logs', { id: 't', limit: 'lots' })).toBe(1);
    expect(callCost('events.list', { limit: -5 })).toBe(1);
    expect(callCost('tasks.logs', { id: 't', limit: 1e6 })).toBe(1);
    expect(callCost('events.list', { limit: 2 ** 53 })).toBe(1);
  });

  it('a full batch of ordinary calls fits, and so does a panel refresh with several open tasks', () => {
    expect(overBudget(Array.from({ length: 50 }, () => ({ path: 'tasks.get', input: { id: 't' } })))).toBeNull();
    const panel = [
      { path: 'tasks.list', input: { limit: 50 } },
      { path: 'queue.get', input: undefined },
      { path: 'system.health', input: undefined },
      ...Array.from({ length: 8 }, () => [
        { path: 'events.list', input: { limit: 1000 } },
        { path: 'tasks.logs', input: { limit: 5000 } },
      ]).flat(),
      { path: 'events.replay', input: { taskId: 't', atPosition: '5' } },
    ];
    expect(overBudget(panel)).toBeNull();
  });

  it('five replays in one batch are over budget, with a message that says what to do', () => {
    const five = Array.from({ length: 5 }, () => ({ path: 'events.replay', input: { taskId: 't' } }));
    const problem = overBudget(five);
    expect(problem).toContain(`its 5 calls cost ${5 * REPLAY_COST}`);
    expect(problem).toContain('events.replay ×5');
    expect(problem).toContain(`at most ${REQUEST_BUDGET}`);
    expect(problem).toContain('separate requests');
    expect(overBudget(five.slice(0, 4))).toBeNull();
  });

  it('a sweep costs one unit per 100 tasks: a call of 1,000 costs 10, and eleven of them in one batch are over budget', () => {
    const sweep = (n: number) => ({ path: 'tasks.createMany', input: { tasks: Array.from({ length: n }, () => ({})) } });
    expect(callCost('tasks.createMany', sweep(1).input)).toBe(1);
    expect(callCost('tasks.createMany', sweep(1000).input)).toBe(10);
    expect(callCost('tasks.createMany', { tasks: 'not a list' })).toBe(1);
    expect(overBudget(Array.from({ length: 10 }, () => sweep(1000)))).toBeNull();
    expect(overBudget(Array.from({ length: 11 }, () => sweep(1000)))).toContain('tasks.createMany ×11 costs 110');
  });
});
