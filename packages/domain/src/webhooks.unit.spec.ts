import { describe, expect, it } from 'vitest';
import {
  backoffMs,
  decideAfterAttempt,
  deliveryId,
  parseSignatureHeader,
  planDeliveries,
  signedContent,
  webhookEventTypeOf,
  webhookUrlProblem,
  type RetryPolicy,
  type TaskRecord,
  type WebhookEndpoint,
} from '.';
import { ev, record, spec, stored } from '../test/given';

const POLICY: RetryPolicy = { maxAttempts: 5, baseDelayMs: 1000, maxDelayMs: 60_000 };
const hook = (id: string, owner: string | null, events: WebhookEndpoint['events'] = []): WebhookEndpoint => ({ id, owner, events });

/** The events of one task's stream (positions from `startPos`), and its record after them. */
function task(id: string, events: Parameters<typeof stored>[0], startPos = 0) {
  const evs = stored(events, id, 0, startPos);
  const rec: TaskRecord = { ...record(...events), id };
  return { evs, rec };
}

describe('planDeliveries: given the log and the webhooks, then what each ending sends to whom', () => {
  const alice = task('t1', [ev.submitted(spec({ owner: 'alice', name: 'mine' })), ev.queued(), ev.assigned(), ev.completed()]);
  const bob = task('t2', [ev.submitted(spec({ owner: 'bob' })), ev.queued(), ev.assigned(), ev.failed()], 10);
  const tasks = new Map([
    ['t1', alice.rec],
    ['t2', bob.rec],
  ]);

  it('no webhooks: nothing', () => {
    expect(planDeliveries([...alice.evs, ...bob.evs], tasks, [])).toEqual([]);
  });

  it("a user's webhook hears only of that user's tasks; a global one of everyone's", () => {
    const plans = planDeliveries([...alice.evs, ...bob.evs], tasks, [hook('wa', 'alice'), hook('wg', null)]);
    expect(plans.map((p) => `${p.webhookId} ${p.taskId} ${p.type}`)).toEqual([
      'wa t1 task.completed',
      'wg t1 task.completed',
      'wg t2 task.failed',
    ]);
  });

  it('only endings are sent: submission, queueing, assignment are not', () => {
    const plans = planDeliveries(alice.evs.slice(0, 3), tasks, [hook('wg', null)]);
    expect(plans).toEqual([]);
  });

  it('a webhook that names its endings gets only those', () => {
    const plans = planDeliveries([...alice.evs, ...bob.evs], tasks, [hook('wf', null, ['task.failed'])]);
    expect(plans.map((p) => p.taskId)).toEqual(['t2']);
  });

  it('the body says what happened: the task, its status, why it failed, and the delivery id (the same on every attempt)', () => {
    const [p] = planDeliveries(bob.evs, tasks, [hook('wb', 'bob')]);
    expect(p!.body).toEqual({
      id: deliveryId('wb', '14'),
      type: 'task.failed',
      occurredAt: bob.evs[3]!.recordedAt,
      position: '14',
      task: {
        id: 't2',
        name: 'demo',
        model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
        owner: 'bob',
        status: 'FAILED',
        finishedAt: bob.evs[3]!.recordedAt,
        reason: 'exit',
        message: 'boom',
        exitCode: 1,
        artifacts: [],
      },
    });
    expect(deliveryId('wb', '14')).toBe('whd_14_wb');
  });

  it('a preemption is told as such: the task is QUEUED again and not finished', () => {
    const pre = task('t3', [
      ev.submitted(),
      ev.queued(),
      ev.assigned(),
      ev.stop('preempt'),
      { type: 'TaskPreempted', data: { exitCode: null, signal: 'SIGTERM', checkpoint: null } },
    ]);
    const [p] = planDeliveries(pre.evs, new Map([['t3', pre.rec]]), [hook('w', null)]);
    expect(p!.body.task).toMatchObject({ status: 'QUEUED', finishedAt: null, reason: 'preempted' });
  });

  it('an event whose task is not known (deleted, another stream) sends nothing', () => {
    expect(planDeliveries(alice.evs, new Map(), [hook('w', null)])).toEqual([]);
  });

  it('names endings as the body does', () => {
    expect(['TaskCompleted', 'TaskFailed', 'TaskCancelled', 'TaskPreempted', 'TaskQueued'].map(webhookEventTypeOf)).toEqual([
      'task.completed',
      'task.failed',
      'task.cancelled',
      'task.preempted',
      null,
    ]);
    expect(webhookEventTypeOf('toString')).toBeNull();
  });
});

describe('decideAfterAttempt: given an attempt and what it came to, then deliver, retry or give up', () => {
  it('a 2xx answer is delivered', () => {
    expect(decideAfterAttempt(1, { kind: 'response', status: 200 }, POLICY, 0.5)).toEqual({ kind: 'delivered' });
    expect(decideAfterAttempt(3, { kind: 'response', status: 204 }, POLICY, 0.5)).toEqual({ kind: 'delivered' });
  });

  it('a 500 is retried after the backoff', () => {
    expect(decideAfterAttempt(1, { kind: 'response', status: 500 }, POLICY, 0)).toEqual({
      kind: 'retry',
      delayMs: 500,
      why: 'HTTP 500 on attempt 1 of 5',
    });
  });

  it('no answer at all (refused, timed out) is retried too', () => {
    const d = decideAfterAttempt(2, { kind: 'error', message: 'connect ECONNREFUSED 127.0.0.1:9' }, POLICY, 1);
    expect(d).toEqual({ kind: 'retry', delayMs: 2000, why: 'connect ECONNREFUSED 127.0.0.1:9 on attempt 2 of 5' });
  });

  it('a 4xx is the receiver refusing the body: failed at once, not retried', () => {
    expect(decideAfterAttempt(1, { kind: 'response', status: 400 }, POLICY, 0.5)).toEqual({
      kind: 'failed',
      why: 'HTTP 400: the receiver refused it; not retried',
    });
    expect(decideAfterAttempt(1, { kind: 'response', status: 410 }, POLICY, 0.5).kind).toBe('failed');
  });

  it('an attempt the service refused to send (a restricted address) is failed at once with the reason, whatever attempts are left', () => {
    expect(decideAfterAttempt(1, { kind: 'refused', message: 'url host 127.0.0.1 is a loopback address' }, POLICY, 0.5)).toEqual({
      kind: 'failed',
      why: 'not sent: url host 127.0.0.1 is a loopback address',
    });
  });

  it('but 408, 425 and 429 say "later": retried', () => {
    for (const status of [408, 425, 429]) expect(decideAfterAttempt(1, { kind: 'response', status }, POLICY, 0.5).kind).toBe('retry');
  });

  it("a receiver's Retry-After longer than the backoff is honoured, within the cap", () => {
    expect(decideAfterAttempt(1, { kind: 'response', status: 429, retryAfterMs: 30_000 }, POLICY, 0)).toMatchObject({ delayMs: 30_000 });
    expect(decideAfterAttempt(1, { kind: 'response', status: 503, retryAfterMs: 3_600_000 }, POLICY, 0)).toMatchObject({ delayMs: 60_000 });
  });

  it('the last attempt failing gives up, saying so', () => {
    expect(decideAfterAttempt(5, { kind: 'response', status: 502 }, POLICY, 0.5)).toEqual({
      kind: 'failed',
      why: 'HTTP 502 on attempt 5 of 5; no attempts left',
    });
  });
});

describe('backoffMs: the wait doubles per attempt, capped, jittered between half and all of it', () => {
  it('doubles', () => {
    expect([1, 2, 3, 4].map((a) => backoffMs(a, POLICY, 1))).toEqual([1000, 2000, 4000, 8000]);
    expect([1, 2, 3, 4].map((a) => backoffMs(a, POLICY, 0))).toEqual([500, 1000, 2000, 4000]);
  });
  it('never passes the cap', () => {
    expect(backoffMs(30, POLICY, 1)).toBe(60_000);
  });
});

describe('signatures: what is signed and how the header reads', () => {
  it('covers the timestamp and the exact body', () => {
    expect(signedContent(1700000000, '{"a":1}')).toBe('1700000000.{"a":1}');
  });
  it('parses t= and v1=, and refuses anything else', () => {
    const sig = 'a'.repeat(64);
    expect(parseSignatureHeader(`t=1700000000,v1=${sig}`)).toEqual({ timestamp: 1700000000, signatures: [sig] });
    expect(parseSignatureHeader(`v1=${sig}`)).toBeNull();
    expect(parseSignatureHeader('t=1,v1=nothex')).toBeNull();
    expect(parseSignatureHeader(undefined)).toBeNull();
  });
});

describe('webhookUrlProblem', () => {
  it('takes http and https URLs', () => {
    expect(webhookUrlProblem('https://example.com/hook?x=1')).toBeNull();
    expect(webhookUrlProblem('http://127.0.0.1:9000/')).toBeNull();
  });
  it('names what is wrong with the rest', () => {
    expect(webhookUrlProblem('example.com')).toMatch(/is not a URL/);
    expect(webhookUrlProblem('ftp://example.com')).toMatch(/http:\/\/ or https:\/\//);
    expect(webhookUrlProblem('https://u:p@example.com')).toMatch(/user name or password/);
  });
});
