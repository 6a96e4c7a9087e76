// Webhooks: what a task's ending sends, to whom, and what to do after each delivery attempt.
// Pure: the edge (services/server/src/webhooks/) reads the log, signs, sends over HTTP, waits
// and records; every decision it acts on is made here.
//
// A webhook belongs to a user (it gets that user's tasks' endings) or to everyone (an admin's
// `allUsers` webhook: every task's). A delivery is one ending event for one webhook, with one body
// (the same bytes on every attempt, so the receiver can dedupe by its `id`); it is tried until the
// receiver answers 2xx, refuses it for good, or the attempts run out.
import type { StoredTaskEvent } from './events';
import type { TaskRecord } from './task';

/** The endings a webhook may be told of, as the body's `type` names them. */
export const WEBHOOK_EVENT_TYPES = ['task.completed', 'task.failed', 'task.cancelled', 'task.preempted'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

const ENDING_OF: Readonly<Record<string, WebhookEventType>> = {
  TaskCompleted: 'task.completed',
  TaskFailed: 'task.failed',
  TaskCancelled: 'task.cancelled',
  TaskPreempted: 'task.preempted',
};

/** The body's type for an event of the log, or null when it is no ending. */
export function webhookEventTypeOf(eventType: string): WebhookEventType | null {
  return Object.hasOwn(ENDING_OF, eventType) ? ENDING_OF[eventType]! : null;
}

export interface WebhookEndpoint {
  id: string;
  /** Whose tasks it hears of; null: every user's (an admin's global webhook). */
  owner: string | null;
  /** The endings it wants; empty: all of them. */
  events: readonly WebhookEventType[];
}

/** The JSON a receiver gets. */
export interface WebhookBody {
  /** The delivery's id: the same on every attempt (dedupe by it). */
  id: string;
  type: WebhookEventType;
  /** When the ending was committed to the log. */
  occurredAt: string;
  /** The ending's position in the event log. */
  position: string;
  task: {
    id: string;
    name: string;
    model: string;
    owner: string;
    /** Its status after the ending (QUEUED after a preemption: it resumes from its checkpoint). */
    status: string;
    finishedAt: string | null;
    /** FAILED: why; CANCELLED: the reason given; PREEMPTED: what stopped it. */
    reason: string | null;
    message: string | null;
    exitCode: number | null;
    artifacts: string[];
  };
}

export interface PlannedDelivery {
  webhookId: string;
  taskId: string;
  eventPosition: string;
  type: WebhookEventType;
  body: WebhookBody;
}

/** A delivery's id: one per webhook and ending, whoever plans it (instances plan the same ones). */
export function deliveryId(webhookId: string, eventPosition: string): string {
  return `whd_${eventPosition}_${webhookId}`;
}

function reasonOf(ev: StoredTaskEvent): { reason: string | null; message: string | null; exitCode: number | null } {
  switch (ev.type) {
    case 'TaskCompleted':
      return { reason: null, message: null, exitCode: ev.data.exitCode };
    case 'TaskFailed':
      return { reason: ev.data.reason, message: ev.data.message, exitCode: ev.data.exitCode };
    case 'TaskCancelled':
      return { reason: 'cancelled', message: ev.data.reason, exitCode: null };
    case 'TaskPreempted':
      return ev.data.lost
        ? { reason: 'lost', message: ev.data.lost.message, exitCode: ev.data.exitCode }
        : {
            reason: 'preempted',
            message: 'preempted by a task of higher priority; it resumes from its checkpoint',
            exitCode: ev.data.exitCode,
          };
    default:
      return { reason: null, message: null, exitCode: null };
  }
}

/**
 * Given the events of the log (in order) and the tasks they belong to, when webhooks are
 * registered, then each ending gets one delivery per webhook that hears of its task's owner
 * and wants that ending. Deleted tasks and events of other streams get none.
 */
export function planDeliveries(
  events: readonly StoredTaskEvent[],
  tasks: ReadonlyMap<string, TaskRecord>,
  endpoints: readonly WebhookEndpoint[],
): PlannedDelivery[] {
  const out: PlannedDelivery[] = [];
  if (!endpoints.length) return out;
  for (const ev of events) {
    const type = webhookEventTypeOf(ev.type);
    if (!type) continue;
    const task = tasks.get(ev.streamId);
    if (!task) continue;
    for (const w of endpoints) {
      if (w.owner !== null && w.owner !== task.spec.owner) continue;
      if (w.events.length && !w.events.includes(type)) continue;
      const why = reasonOf(ev);
      out.push({
        webhookId: w.id,
        taskId: task.id,
        eventPosition: ev.position,
        type,
        body: {
          id: deliveryId(w.id, ev.position),
          type,
          occurredAt: ev.recordedAt,
          position: ev.position,
          task: {
            id: task.id,
            name: task.spec.name,
            model: task.spec.model,
            owner: task.spec.owner,
            status: type === 'task.preempted' ? 'QUEUED' : type.slice('task.'.length).toUpperCase(),
            finishedAt: type === 'task.preempted' ? null : ev.recordedAt,
            ...why,
            artifacts: type === 'task.completed' ? [...task.artifacts] : [],
          },
        },
      });
    }
  }
  return out;
}

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  maxAttempts: number;
  /** The wait after the first failed attempt; it doubles after each further one. */
  baseDelayMs: number;
  /** No wait is longer (a receiver's Retry-After included). */
  maxDelayMs: number;
}

/** What one attempt came to, as the edge saw it. */
export type AttemptResult =
  | { kind: 'response'; status: number; /** Retry-After, when the receiver sent one (ms). */ retryAfterMs?: number | null }
  /** No answer: refused connection, reset, timeout, DNS. */
  | { kind: 'error'; message: string }
  /** Not sent: the service refused to send it (a non-admin's webhook to a restricted address). */
  | { kind: 'refused'; message: string };

export type DeliveryDecision = { kind: 'delivered' } | { kind: 'retry'; delayMs: number; why: string } | { kind: 'failed'; why: string };

/** Answers worth trying again: the receiver may get better (408 timeout, 425, 429 slow down, 5xx). */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 425 || status === 429 || status >= 500;
}

/**
 * The wait before attempt `attempt + 1` after attempt `attempt` failed: the base doubled per
 * attempt, capped, with "equal jitter" (between half and all of it; `jitter` in [0, 1) is the
 * edge's random draw) so that many deliveries failed together do not return together.
 */
export function backoffMs(attempt: number, policy: RetryPolicy, jitter: number): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  const j = Math.min(Math.max(jitter, 0), 1);
  return Math.round(exp / 2 + (exp / 2) * j);
}

function describe(result: AttemptResult): string {
  return result.kind === 'response' ? `HTTP ${result.status}` : result.message;
}

/**
 * Given attempt number `attempt` (1 for the first) and what it came to, when the policy is
 * applied, then: a 2xx answer is delivered; another 4xx (but 408, 425, 429) is failed at once
 * (the receiver refused it; the same body would be refused again); anything else is retried
 * after the backoff (or the receiver's Retry-After when longer, both capped) until the attempts
 * run out, then failed.
 */
export function decideAfterAttempt(attempt: number, result: AttemptResult, policy: RetryPolicy, jitter: number): DeliveryDecision {
  if (result.kind === 'response' && result.status >= 200 && result.status < 300) return { kind: 'delivered' };
  // Sending it again would be refused again (the address rule does not change between attempts).
  if (result.kind === 'refused') return { kind: 'failed', why: `not sent: ${result.message}` };
  const seen = describe(result);
  if (result.kind === 'response' && !isRetryableStatus(result.status))
    return { kind: 'failed', why: `${seen}: the receiver refused it; not retried` };
  if (attempt >= policy.maxAttempts)
    return { kind: 'failed', why: `${seen} on attempt ${attempt} of ${policy.maxAttempts}; no attempts left` };
  const wait = Math.min(
    policy.maxDelayMs,
    Math.max(backoffMs(attempt, policy, jitter), result.kind === 'response' ? (result.retryAfterMs ?? 0) : 0),
  );
  return { kind: 'retry', delayMs: wait, why: `${seen} on attempt ${attempt} of ${policy.maxAttempts}` };
}

/** The header a delivery's signature travels in: `t=<unix seconds>,v1=<hex HMAC-SHA256>`. */
export const WEBHOOK_SIGNATURE_HEADER = 'x-trainyard-signature';

/** What the HMAC covers: the timestamp and the exact body bytes, so neither can be changed or replayed later. */
export function signedContent(timestampSeconds: number, body: string): string {
  return `${timestampSeconds}.${body}`;
}

/** The signature header's parts; null when it is not of that form. */
export function parseSignatureHeader(header: string | null | undefined): { timestamp: number; signatures: string[] } | null {
  if (!header) return null;
  let timestamp: number | null = null;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 't' && /^\d{1,12}$/.test(v)) timestamp = Number(v);
    else if (k === 'v1' && /^[0-9a-f]{64}$/.test(v)) signatures.push(v);
  }
  return timestamp === null || !signatures.length ? null : { timestamp, signatures };
}

/** What is wrong with a webhook's URL, in words; null when it will do. */
export function webhookUrlProblem(text: string): string | null {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return `url "${text}" is not a URL: give one like https://example.com/hooks/trainyard`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `url must start with http:// or https:// (got ${u.protocol}//)`;
  if (u.username || u.password) return 'url must not hold a user name or password: the signature says the delivery is ours';
  if (u.hash) return 'url must not have a #fragment';
  return null;
}
