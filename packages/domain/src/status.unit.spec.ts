import { describe, expect, it } from 'vitest';
import {
  ACTIVE_STATUSES,
  isActive,
  isTerminal,
  isWaiting,
  OPEN_STATUSES,
  TASK_STATUSES,
  TERMINAL_STATUSES,
  WAITING_STATUSES,
} from './status';

describe('status groups', () => {
  it('given every status, then each is in exactly one of waiting, active and terminal', () => {
    for (const s of TASK_STATUSES) expect([isWaiting(s), isActive(s), isTerminal(s)].filter(Boolean)).toHaveLength(1);
    expect([...WAITING_STATUSES, ...ACTIVE_STATUSES, ...TERMINAL_STATUSES].sort()).toEqual([...TASK_STATUSES].sort());
  });

  it('given the open statuses, then they are the waiting and the active ones, in lifecycle order', () => {
    expect(OPEN_STATUSES).toEqual([...WAITING_STATUSES, ...ACTIVE_STATUSES]);
  });

  it('given a string that is no status, then no group claims it', () => {
    expect([isWaiting('RUNNING'), isActive('RUNNING'), isTerminal('RUNNING')]).toEqual([false, false, false]);
  });
});
