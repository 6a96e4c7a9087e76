import { describe, expect, it } from 'vitest';
import { initialTransition, transition } from 'xstate';
import { machineSteps } from './machine-steps';
import { taskMachine, type LifecycleEvent } from './lifecycle';
import { grant, spec, T0 } from '../test/given';

const at = (s: number) => new Date(T0 + s * 1000).toISOString();
const base = { actor: 'alice', streamId: 't1' };
const history = [
  { ...base, type: 'TaskSubmitted', data: { spec: spec() }, at: at(0), position: '1' },
  { ...base, type: 'TaskQueued', data: {}, at: at(1), position: '2' },
  { ...base, type: 'TaskAssigned', data: { devices: [grant(0)], runnerId: 'r1', attempt: 1 }, at: at(2), position: '3' },
  { ...base, type: 'TrainingStarted', data: {}, at: at(3), position: '4' },
  { ...base, type: 'TaskCompleted', data: { exitCode: 0 }, at: at(9), position: '5' },
] as unknown as LifecycleEvent[];

describe('machineSteps (one inert scope for every step)', () => {
  it('gives the snapshots xstate’s own initialTransition and transition give, step by step', () => {
    const steps = machineSteps(taskMachine);
    let ours = steps.initial;
    let theirs = initialTransition(taskMachine)[0];
    expect(ours.value).toEqual(theirs.value);
    expect(ours.context).toEqual(theirs.context);
    for (const event of history) {
      ours = steps.next(ours, event);
      theirs = transition(taskMachine, theirs, event)[0];
      expect(ours.value).toEqual(theirs.value);
      expect(ours.context).toEqual(theirs.context);
      expect(ours.status).toBe(theirs.status);
    }
    expect(ours.value).toBe('COMPLETED');
  });

  it('leaves the shared initial snapshot as it was after steps from it', () => {
    const steps = machineSteps(taskMachine);
    const before = structuredClone({ value: steps.initial.value, context: steps.initial.context });
    steps.next(steps.initial, history[0]!);
    expect({ value: steps.initial.value, context: steps.initial.context }).toEqual(before);
  });
});
