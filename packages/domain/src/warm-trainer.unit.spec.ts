import { describe, expect, it } from 'vitest';
import { decideWarmTrainer, WARM_NEVER_READY_LIMIT, warmWanted, type WarmTrainerFacts } from './warm-trainer';

const IDLE = 60_000;
const given = (over: Partial<WarmTrainerFacts> = {}): WarmTrainerFacts => ({
  idleLimitMs: IDLE,
  queued: 3,
  command: 'python3 tiny',
  neverReady: 0,
  idleRetiredSinceLaunch: false,
  standby: null,
  ...over,
});
const warm = (state: 'starting' | 'ready' | 'died', waitedMs = 1000, command = 'python3 tiny') => ({ warm: { command, state, waitedMs } });

describe('decideWarmTrainer: given the queue and the standby, then what the runner keeps', () => {
  it('after a launch with tasks still queued, the next standby gets a warm trainer', () => {
    expect(decideWarmTrainer(given())).toEqual({ action: 'start', warm: true });
  });

  it('after a launch with nothing queued, the standby is a plain shepherd', () => {
    expect(decideWarmTrainer(given({ queued: 0 }))).toEqual({ action: 'start', warm: false });
  });

  it('a warm trainer starting or waiting for a slot about to free is kept', () => {
    expect(decideWarmTrainer(given({ standby: warm('starting') }))).toEqual({ action: 'keep' });
    expect(decideWarmTrainer(given({ standby: warm('ready', IDLE - 1) }))).toEqual({ action: 'keep' });
  });

  it('a warm trainer is retired when nothing is queued any more', () => {
    expect(decideWarmTrainer(given({ queued: 0, standby: warm('ready') }))).toEqual({
      action: 'replace',
      warm: false,
      reason: 'nothing queued',
    });
  });

  it('a warm trainer is retired after waiting the idle limit, and none is started until the next launch', () => {
    expect(decideWarmTrainer(given({ standby: warm('ready', IDLE) }))).toEqual({ action: 'replace', warm: false, reason: 'idle' });
    expect(decideWarmTrainer(given({ idleRetiredSinceLaunch: true, standby: { warm: null } }))).toEqual({ action: 'keep' });
    expect(decideWarmTrainer(given({ idleRetiredSinceLaunch: false, standby: null }))).toEqual({ action: 'start', warm: true });
  });

  it('a warm trainer of another command is replaced by one of the command launches run now', () => {
    expect(decideWarmTrainer(given({ standby: warm('ready', 10, 'node simulated') }))).toEqual({
      action: 'replace',
      warm: true,
      reason: 'command changed',
    });
  });

  it('a plain standby gets a warm trainer when tasks are queued; one whose warm trainer died counts as plain', () => {
    expect(decideWarmTrainer(given({ standby: { warm: null } }))).toEqual({ action: 'replace', warm: true, reason: 'tasks queued' });
    expect(decideWarmTrainer(given({ standby: warm('died') }))).toEqual({ action: 'replace', warm: true, reason: 'tasks queued' });
    expect(decideWarmTrainer(given({ queued: 0, standby: warm('died') }))).toEqual({ action: 'keep' });
  });

  it(`a command whose warm trainers died ${WARM_NEVER_READY_LIMIT} times before they were ready is not warmed (it does not do standby)`, () => {
    const f = given({ neverReady: WARM_NEVER_READY_LIMIT });
    expect(warmWanted(f)).toBe('never ready');
    expect(decideWarmTrainer(f)).toEqual({ action: 'start', warm: false });
    expect(decideWarmTrainer({ ...f, standby: warm('starting') })).toEqual({ action: 'replace', warm: false, reason: 'never ready' });
    expect(decideWarmTrainer(given({ neverReady: WARM_NEVER_READY_LIMIT - 1 }))).toEqual({ action: 'start', warm: true });
  });

  it('an idle limit of 0 turns warm trainers off', () => {
    expect(decideWarmTrainer(given({ idleLimitMs: 0 }))).toEqual({ action: 'start', warm: false });
    expect(decideWarmTrainer(given({ idleLimitMs: 0, standby: warm('ready') }))).toEqual({ action: 'replace', warm: false, reason: 'off' });
  });
});
