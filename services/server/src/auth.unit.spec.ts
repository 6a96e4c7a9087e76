// The pure parts of who is calling: which bind addresses count as loopback (local mode refuses
// the rest), how a bearer token is read from its header, and what queue.get shows a user of
// other users' tasks.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { TaskRecord } from '@trainyard/domain';
import { isTokenShaped } from '@trainyard/store';
import { bearerToken, isLoopbackHost } from './auth';
import { queueFor } from './visibility';

describe('isLoopbackHost', () => {
  it.each(['127.0.0.1', '127.1.2.3', 'localhost', 'LOCALHOST', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1'])(
    '%s is loopback',
    (h) => {
      expect(isLoopbackHost(h)).toBe(true);
    },
  );
  it.each([
    '0.0.0.0',
    '::',
    '[::]',
    '192.168.1.10',
    '10.0.0.1',
    'gpu-box.lan',
    '128.0.0.1',
    '::ffff:10.0.0.1',
    'localhost.evil.example',
    '',
  ])('%s is not', (h) => {
    expect(isLoopbackHost(h)).toBe(false);
  });
});

describe('bearerToken', () => {
  const token = `ty_${'a'.repeat(43)}`;
  it('reads "Bearer <token>", the scheme in any case', () => {
    expect(bearerToken(`Bearer ${token}`)).toBe(token);
    expect(bearerToken(`bearer ${token}`)).toBe(token);
    expect(bearerToken(`Bearer   ${token} `)).toBe(token);
  });
  it('anything else has none', () => {
    for (const h of [
      undefined,
      '',
      'Bearer',
      'Bearer ',
      token,
      `Basic ${token}`,
      `Bearer ${token} more`,
      `Bearer\t${token}`,
      `Token ${token}`,
    ])
      expect(bearerToken(h), JSON.stringify(h)).toBeNull();
  });
  it('no header a client can send passes as a token unless it carries one of the exact form (fuzz)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string().map((s) => `Bearer ${s}`),
          fc.stringMatching(/^Bearer ty_[A-Za-z0-9_=+/-]{0,50}$/),
        ),
        (header) => {
          const t = bearerToken(header);
          if (t === null) return;
          expect(header.toLowerCase().startsWith('bearer ')).toBe(true);
          expect(/\s/.test(t)).toBe(false);
          // What reaches the database lookup is only ever a token-shaped string.
          if (isTokenShaped(t)) expect(t).toMatch(/^ty_[A-Za-z0-9_-]{43}$/);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('queueFor', () => {
  const task = (id: string, owner: string) => ({ id, spec: { owner } }) as unknown as TaskRecord;
  const queue = {
    policy: 'fifo',
    devices: [
      {
        id: 'gpu0',
        holders: [
          { taskId: 'tb1', memoryGb: 24, exclusive: true, endsBy: '2026-01-01T01:00:00.000Z', task: task('tb1', 'bob') },
          { taskId: 'ta0', memoryGb: 8, exclusive: false, endsBy: null, task: task('ta0', 'alice') },
        ],
      },
    ],
    queued: [
      { position: 1, task: task('tb2', 'bob'), reason: { code: 'WAITING_FOR_DEVICES' as const, message: 'Needs 1 GPU, 0 free.' } },
      {
        position: 2,
        task: task('ta1', 'alice'),
        reason: { code: 'BEHIND_HEAD' as const, message: 'Waits behind task tb2, first in the queue.' },
      },
    ],
    reservation: { taskId: 'tb2', startAt: '2026-01-01T01:00:00.000Z', deviceIds: ['gpu0'] },
    queuedCount: 2,
  };

  it('an admin sees everything, and nothing is hidden', () => {
    expect(queueFor({ user: 'root', admin: true }, queue)).toEqual({ ...queue, hidden: null });
  });

  it("a user sees their own tasks at their places; of others' only places, memory and the reservation's time", () => {
    const q = queueFor({ user: 'alice', admin: false }, queue);
    expect(q.devices[0]!.holders.map((h) => h.taskId)).toEqual(['ta0']);
    expect(q.queued.map((e) => [e.task.id, e.position])).toEqual([['ta1', 2]]);
    expect(q.queued[0]!.reason.message).toBe("Waits behind another user's task, first in the queue.");
    expect(q.reservation).toBeNull();
    expect(q.hidden).toEqual({
      queuedPositions: [1],
      holders: [{ deviceId: 'gpu0', kind: 'task', memoryGb: 24, exclusive: true, endsBy: '2026-01-01T01:00:00.000Z' }],
      reservation: { startAt: '2026-01-01T01:00:00.000Z', deviceIds: ['gpu0'] },
    });
    expect(q.queuedCount).toBe(2);
    expect(JSON.stringify(q)).not.toMatch(/tb1|tb2|bob/);
  });

  it('the owner of the head keeps its reservation', () => {
    const q = queueFor({ user: 'bob', admin: false }, queue);
    expect(q.reservation?.taskId).toBe('tb2');
    expect(q.hidden?.reservation).toBeNull();
    expect(q.hidden?.queuedPositions).toEqual([2]);
  });
});
