import { describe, expect, it } from 'vitest';
import { decideRecovery, type RunFacts } from '.';

const none: RunFacts = { trainerFile: null, exitFile: null, trainerAlive: false };
const trainer = { pid: 10, startTime: '99', runDir: '/r' };

describe('decideRecovery: given what the record and the run folder say, then the action', () => {
  it('no trainer recorded, none in the folder: launch one', () => {
    expect(decideRecovery({ trainer: null }, none)).toEqual({ kind: 'launch' });
  });
  it('no trainer recorded but the shepherd reported one: record the spawn first', () => {
    expect(decideRecovery({ trainer: null }, { ...none, trainerFile: { pid: 7, startTime: '1' } })).toEqual({
      kind: 'recordSpawn',
      pid: 7,
      startTime: '1',
    });
  });
  it('no trainer and the shepherd could not start it: fail as a spawn error', () => {
    expect(decideRecovery({ trainer: null }, { ...none, exitFile: { code: null, signal: null, error: 'spawn failed: ENOENT' } })).toEqual({
      kind: 'failSpawn',
      message: 'spawn failed: ENOENT',
    });
  });
  it('no trainer recorded or reported, but its shepherd is starting: wait for it, do not launch another', () => {
    expect(decideRecovery({ trainer: null }, { ...none, shepherdAlive: true })).toEqual({ kind: 'awaitShepherd' });
  });
  it('no trainer recorded or reported, a launch begun but no shepherd left: launch', () => {
    expect(decideRecovery({ trainer: null }, { ...none, shepherdAlive: false })).toEqual({ kind: 'launch' });
  });
  it('recorded trainer still running (same pid and start time): follow it', () => {
    expect(decideRecovery({ trainer }, { ...none, trainerAlive: true })).toEqual({ kind: 'follow' });
  });
  it('recorded trainer ended with an exit status: settle it', () => {
    expect(decideRecovery({ trainer }, { ...none, exitFile: { code: 0, signal: null } })).toEqual({ kind: 'settle' });
  });
  it('recorded trainer gone without a trace: fail as lost, saying so', () => {
    const a = decideRecovery({ trainer }, none);
    expect(a.kind).toBe('failLost');
    expect((a as { message: string }).message).toMatch(/trainer process 10 is gone/);
  });
});
