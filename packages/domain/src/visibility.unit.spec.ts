// What a preempted task's owner reads of the preemption, given/when/then: given the stop the
// scheduler recorded (message and grounds naming the task it made room for, its owner and every
// user's devices), when a reader who is not an admin reads it, then another user's task, name
// and devices are not in it; the task's own owner, when the head is also theirs, and an admin
// read it whole.
import { describe, expect, it } from 'vitest';
import { PREEMPTED_FOR_OTHER, preemptedFor, queueFor, visibleEvent, visibleStop, type PreemptionGrounds, type TaskRecord } from '.';

const alice = { user: 'alice', admin: false };
const bob = { user: 'bob', admin: false };
const root = { user: 'root', admin: true };
const fairMessage =
  'preempted for task T-BOB by fair share: bob holds 0 of 2 devices (fair share 1), alice holds 2 (fair share 1); ' +
  'it goes back to the queue and resumes from its last checkpoint';
const priorityMessage = 'preempted for task T-BOB (priority 100): it goes back to the queue and resumes from its last checkpoint';
const grounds = (headOwner: string): PreemptionGrounds => ({
  rule: 'fair-share',
  head: { taskId: 'T-BOB', owner: headOwner, priority: 0, gpus: 1 },
  victim: { taskId: 'T-ALICE', owner: 'alice', priority: 0, startedAt: 1, gpus: 1 },
  pool: 2,
  users: [
    { user: 'alice', weight: 1, held: 2, fairShare: 1, standing: 3 },
    { user: 'bob', weight: 1, held: 0, fairShare: 1, standing: 0 },
  ],
  victims: ['T-ALICE', 'T-CAROL'],
});
const stopEvent = (message: string, g?: PreemptionGrounds) => ({
  type: 'StopRequested',
  streamId: 'T-ALICE',
  data: { reason: 'preempt', message, ...(g ? { grounds: g } : {}) },
});
const record = (message: string) => ({ stop: { reason: 'preempt' as const, message, by: 'scheduler', at: 'now' } });

describe('a preemption as its victim’s owner reads it', () => {
  it('given a scheduler’s message, the task it names is read from it; any other message names none', () => {
    expect(preemptedFor(fairMessage)).toBe('T-BOB');
    expect(preemptedFor(priorityMessage)).toBe('T-BOB');
    expect(preemptedFor('paused by alice: it checkpoints and waits to be resumed')).toBeNull();
  });

  it('given a fair-share preemption for bob’s task, alice’s StopRequested names neither bob, his task nor anyone’s devices', () => {
    const seen = visibleEvent(alice, stopEvent(fairMessage, grounds('bob')));
    const text = JSON.stringify(seen);
    for (const leak of ['T-BOB', 'bob', 'T-CAROL', '"held":0']) expect(text).not.toContain(leak);
    expect(seen.data).toEqual({
      reason: 'preempt',
      message: PREEMPTED_FOR_OTHER['fair-share'],
      grounds: {
        rule: 'fair-share',
        victim: grounds('bob').victim,
        pool: 2,
        users: [{ user: 'alice', weight: 1, held: 2, fairShare: 1, standing: 3 }],
        victims: ['T-ALICE'],
      },
    });
  });

  it('given a priority preemption recorded without grounds (head’s owner unknown), alice reads the general message', () => {
    expect(visibleEvent(alice, stopEvent(priorityMessage)).data.message).toBe(PREEMPTED_FOR_OTHER.priority);
    expect(visibleStop(alice, record(priorityMessage), null).stop.message).toBe(PREEMPTED_FOR_OTHER.priority);
  });

  it('given the task made room for is alice’s own, she reads the message and the head, but still no other user', () => {
    const seen = visibleEvent(alice, stopEvent(fairMessage, grounds('alice')));
    expect(seen.data.message).toBe(fairMessage);
    expect(seen.data.grounds).toMatchObject({
      head: { taskId: 'T-BOB', owner: 'alice' },
      users: [{ user: 'alice' }],
      victims: ['T-ALICE'],
    });
    expect(visibleStop(alice, record(fairMessage), 'alice').stop.message).toBe(fairMessage);
  });

  it('given an admin, the event and the record are read whole', () => {
    const e = stopEvent(fairMessage, grounds('bob'));
    expect(visibleEvent(root, e)).toBe(e);
    expect(visibleStop(root, record(fairMessage), 'bob').stop.message).toBe(fairMessage);
  });

  it('given any other event or stop (a cancel, a pause), it is read as recorded', () => {
    const cancel = { type: 'StopRequested', data: { reason: 'cancel', message: 'cancelled by user' } };
    expect(visibleEvent(bob, cancel)).toBe(cancel);
    const queued = { type: 'TaskQueued', data: { message: 'preempted for task X' } };
    expect(visibleEvent(bob, queued)).toBe(queued);
    const paused = record('paused by alice: it checkpoints and waits to be resumed');
    expect(visibleStop(alice, paused, null)).toBe(paused);
  });
});

describe('a deployment holding a device, in queue.get as a user reads it', () => {
  // Given one device held by alice's deployment and bob's, and bob's queued task waiting on both.
  const holder = (id: string, owner: string) => ({
    taskId: id,
    memoryGb: 24,
    exclusive: false,
    endsBy: null,
    task: null,
    deployment: { id, owner, serves: [`model-of-${owner}`] },
  });
  const bobsTask = { spec: { owner: 'bob' } } as unknown as TaskRecord;
  const queue = {
    devices: [{ id: 'gpu0', holders: [holder('dep-a', 'alice'), holder('dep-b', 'bob')] }],
    queued: [
      {
        position: 1,
        task: bobsTask,
        reason: { code: 'HELD_BY_DEPLOYMENT' as const, message: 'Waits for deployment dep-a to release its memory.' },
      },
    ],
    reservation: null,
  };

  it('when its owner reads it, then it is named by what it serves; another user’s is memory of kind deployment, its id taken out of the reasons', () => {
    const seen = queueFor(bob, queue);
    expect(seen.devices[0]!.holders.map((h) => h.deployment?.serves)).toEqual([['model-of-bob']]);
    expect(seen.hidden!.holders).toEqual([{ deviceId: 'gpu0', kind: 'deployment', memoryGb: 24, exclusive: false, endsBy: null }]);
    expect(seen.queued[0]!.reason.message).not.toContain('dep-a');
  });

  it('when an admin reads it, then every deployment is named and nothing is hidden', () => {
    const seen = queueFor(root, queue);
    expect(seen.devices[0]!.holders.map((h) => h.deployment?.owner)).toEqual(['alice', 'bob']);
    expect(seen.hidden).toBeNull();
  });
});
