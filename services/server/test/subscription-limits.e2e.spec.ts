// Issue 10, finding 3: subscriptions had no limits. Each idle tasks.onUpdate read the log about
// once a second, so 1,000 held by one client stalled tasks.list for a minute. Here, over real
// HTTP against the real server on PGlite and Postgres: hundreds of raw SSE subscriptions from one
// client are capped (per client, then in total) with a TOO_MANY_REQUESTS that says how to raise
// the limit; the held ones cost no database read each (every one of them gets a change from one
// read, counted by the server's own /metrics); tasks.list answers while they are held; and a
// subscription ended at its maximum duration is resumed by the real client without losing an event.
import { request, type ClientRequest } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TaskView, TrainyardClient } from '@trainyard/client';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { eventually, simulated, startServer, type RunningServer } from './harness';
import {
  drain,
  eventsOf,
  headPosition,
  serverOutputOnFailure,
  waitFor,
  waitTerminal,
  WAIT_MS,
  type StoredEvent,
} from './lifecycle-support';

interface SseEvent {
  event: string;
  data: string;
  id: string | null;
}

/** A raw SSE subscription (no client library, no reconnect), from a chosen local address. */
class RawSubscription {
  readonly events: SseEvent[] = [];
  ended = false;
  private buffer = '';
  private readonly req: ClientRequest;

  constructor(url: string, proc: string, input: unknown, localAddress = '127.0.0.1') {
    const u = new URL(`${url}/trpc/${proc}?input=${encodeURIComponent(JSON.stringify(input))}`);
    this.req = request(u, { localAddress, agent: false, headers: { accept: 'text/event-stream' } }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => this.parse(chunk));
      res.on('end', () => (this.ended = true));
      res.on('error', () => (this.ended = true));
    });
    this.req.on('error', () => (this.ended = true));
    this.req.end();
  }

  /** The error the server sent (a serialized tRPC error shape), if any. */
  get error(): { message: string; data: { code: string } } | null {
    const e = this.events.find((x) => x.event === 'serialized-error');
    return e ? JSON.parse(e.data) : null;
  }

  get messages(): { id: string | null; data: { event: StoredEvent; task: TaskView | null } }[] {
    return this.events.filter((e) => e.event === '' && e.data).map((e) => ({ id: e.id, data: JSON.parse(e.data) }));
  }

  close(): void {
    this.req.destroy();
  }

  private parse(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const ev: SseEvent = { event: '', data: '', id: null };
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) ev.event = line.slice(7);
        else if (line.startsWith('data: ')) ev.data += line.slice(6);
        else if (line.startsWith('id: ')) ev.id = line.slice(4);
      }
      this.events.push(ev);
    }
  }
}

/** The server's own counters, from /metrics (`name` or `name{labels}` → value). */
async function metrics(s: RunningServer): Promise<Map<string, number>> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('trainyard_')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

const metric = async (s: RunningServer, name: string) => (await metrics(s)).get(name) ?? 0;
const openUpdates = (s: RunningServer) => metric(s, 'trainyard_subscriptions{procedure="onUpdate"}');
const openLogs = (s: RunningServer) => metric(s, 'trainyard_subscriptions{procedure="onLogs"}');

const TOTAL = 260;
const PER_CLIENT = 200;

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`subscription limits on ${backend.kind}`, () => {
    let s: RunningServer;
    let c: TrainyardClient;
    const held: RawSubscription[] = [];
    beforeAll(async () => {
      s = await startServer({
        backend,
        env: {
          TRAINYARD_MAX_SUBSCRIPTIONS: String(TOTAL),
          TRAINYARD_MAX_SUBSCRIPTIONS_PER_CLIENT: String(PER_CLIENT),
          TRAINYARD_GPU_SLOTS: '1',
        },
      });
      c = s.client;
    });
    serverOutputOnFailure(() => s);
    afterEach(async () => {
      for (const r of held.splice(0)) r.close();
      await eventually(async () => (await openUpdates(s)) + (await openLogs(s)) === 0, 'every subscription to be released', WAIT_MS);
      await drain(c);
    });
    afterAll(async () => {
      await s?.dispose();
    });

    it('a client past its limit is refused with TOO_MANY_REQUESTS, then the service past its total; idle subscribers cost no read each; tasks.list answers', async () => {
      // One client opens more than its share.
      for (let i = 0; i < PER_CLIENT + 20; i++) held.push(new RawSubscription(s.url, 'tasks.onUpdate', {}));
      await eventually(
        async () => held.filter((r) => r.error).length === 20 && (await openUpdates(s)) === PER_CLIENT,
        `${PER_CLIENT} held and 20 refused`,
        WAIT_MS,
      );
      const refused = held.filter((r) => r.error);
      for (const r of refused) {
        expect(r.error!.data.code).toBe('TOO_MANY_REQUESTS');
        expect(r.error!.message).toContain(`the limit per client is ${PER_CLIENT}`);
        expect(r.error!.message).toContain('TRAINYARD_MAX_SUBSCRIPTIONS_PER_CLIENT');
      }
      // Another client (another loopback address) gets the rest of the total, and no more.
      const other: RawSubscription[] = [];
      for (let i = 0; i < TOTAL - PER_CLIENT + 10; i++) other.push(new RawSubscription(s.url, 'tasks.onUpdate', {}, '127.0.0.2'));
      held.push(...other);
      await eventually(
        async () => other.filter((r) => r.error).length === 10 && (await openUpdates(s)) === TOTAL,
        `${TOTAL} held in all and 10 more refused`,
        WAIT_MS,
      );
      for (const r of other.filter((x) => x.error)) {
        expect(r.error!.data.code).toBe('TOO_MANY_REQUESTS');
        expect(r.error!.message).toContain(`its limit is ${TOTAL}`);
        expect(r.error!.message).toContain('TRAINYARD_MAX_SUBSCRIPTIONS');
      }
      const live = held.filter((r) => !r.error);
      expect(live).toHaveLength(TOTAL);

      // The service answers while they are held.
      const list = await c.tasks.list.query({ limit: 5 });
      expect(Array.isArray(list.items)).toBe(true);

      // A change reaches every held subscription from one read of the log and one load of its
      // tasks per batch: no subscriber reads by itself (no catch-up), and the loads are far fewer
      // than the subscribers (one read each would be at least TOTAL).
      const before = await metrics(s);
      const t = await c.tasks.create.mutate(simulated({ steps: 1, stepMs: 0 }, { name: 'seen by all' }));
      await eventually(
        async () => live.every((r) => r.messages.some((m) => m.data.event.streamId === t.id && m.data.event.type === 'TaskCompleted')),
        'every subscription to see the task complete',
        WAIT_MS,
      );
      const after = await metrics(s);
      const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
      expect(delta('trainyard_subscription_catch_up_reads_total')).toBe(0);
      const loads = delta('trainyard_subscription_fan_out_loads_total');
      expect(loads).toBeGreaterThan(0);
      expect(loads).toBeLessThanOrEqual(delta('trainyard_feed_batches_total'));
      expect(loads).toBeLessThan(TOTAL);
      // Each got the task's events in log order, each with its task, ids being positions.
      const log = (await eventsOf(c, t.id)).map((e) => e.position);
      for (const r of live) {
        const mine = r.messages.filter((m) => m.data.event.streamId === t.id);
        expect(mine.map((m) => m.id)).toEqual(log);
        expect(mine.every((m) => m.data.task?.id === t.id)).toBe(true);
      }

      // Places are given back when clients go: the first client may subscribe again.
      for (const r of live.slice(0, 10)) r.close();
      await eventually(async () => (await openUpdates(s)) === TOTAL - 10, 'closed subscriptions to be released', WAIT_MS);
      const again = new RawSubscription(s.url, 'tasks.onUpdate', {});
      held.push(again);
      await eventually(async () => (await openUpdates(s)) === TOTAL - 9, 'a new subscription to be held', WAIT_MS);
      expect(again.error).toBeNull();
    });

    it('many log subscribers of one task get every line from reads shared between them', async () => {
      const N = 150;
      // The slot is busy, so the watched task waits (no lines yet) while its subscribers join.
      const blocker = await c.tasks.create.mutate(simulated({ steps: 10_000, stepMs: 100 }, { name: 'blocker' }));
      await waitFor(c, blocker.id, 'TRAINING');
      const t = await c.tasks.create.mutate(simulated({ steps: 20, stepMs: 20, logLinesPerStep: 3 }, { name: 'chatty, watched' }));
      const subs: RawSubscription[] = [];
      for (let i = 0; i < N; i++) subs.push(new RawSubscription(s.url, 'tasks.onLogs', { id: t.id }));
      held.push(...subs);
      await eventually(async () => (await openLogs(s)) === N, `${N} log subscriptions held`, WAIT_MS);
      const before = await metric(s, 'trainyard_subscription_log_reads_total');

      await c.tasks.cancel.mutate({ id: blocker.id });
      await waitTerminal(c, t.id);
      const stored = (await c.tasks.logs.query({ id: t.id, limit: 5000 })).lines.map((l) => String(l.seq));
      expect(stored.length).toBeGreaterThanOrEqual(60);
      await eventually(
        async () => subs.every((r) => r.events.filter((e) => e.event === '' && e.data).length >= stored.length),
        'every subscriber to get every line',
        WAIT_MS,
      );
      for (const r of subs) expect(r.events.filter((e) => e.event === '' && e.data).map((e) => e.id)).toEqual(stored);
      // Reading for each subscriber would take at least N reads to deliver anything to all of them.
      const reads = (await metric(s, 'trainyard_subscription_log_reads_total')) - before;
      expect(reads).toBeGreaterThan(0);
      expect(reads).toBeLessThan(N);
    });
  });

  describe.skipIf(!backendAvailable(backend))(`subscription maximum duration on ${backend.kind}`, () => {
    let s: RunningServer;
    beforeAll(async () => {
      s = await startServer({ backend, env: { TRAINYARD_SUBSCRIPTION_MAX_MS: '1000' } });
      await waitTerminal(s.client, (await s.client.tasks.create.mutate(simulated({ steps: 1, stepMs: 0 }, { name: 'warm-up' }))).id);
    });
    serverOutputOnFailure(() => s);
    afterAll(async () => {
      await s?.dispose();
    });

    it('a subscription is ended at its maximum duration and the client resumes from its last id without losing or repeating an event', async () => {
      const c = s.client;
      const from = await headPosition(c);
      const t = await c.tasks.create.mutate(simulated({ steps: 40, stepMs: 150 }, { name: 'outlives its subscription' }));
      const got: { id: string; type: string }[] = [];
      const errors: unknown[] = [];
      let starts = 0;
      const sub = c.tasks.onUpdate.subscribe(
        { taskId: t.id, lastEventId: from },
        {
          onStarted: () => starts++,
          onData: (d) => got.push({ id: d.id, type: d.data.event.type }),
          onError: (e) => errors.push(e),
        },
      );
      try {
        await eventually(
          async () => got.some((g) => g.type === 'TaskCompleted'),
          'the task to complete, seen through the subscription',
          WAIT_MS,
        );
      } finally {
        sub.unsubscribe();
      }
      expect(errors).toEqual([]);
      // The task ran for several seconds: the stream was ended and opened again along the way.
      expect(starts).toBeGreaterThanOrEqual(2);
      const log = (await eventsOf(c, t.id)).map((e) => e.position);
      expect(got.map((g) => g.id)).toEqual(log);
    });
  });
}
