// Issue 10, finding 6 (replay and batches): events.replay returned the state after every event
// with no limit (300 artifact paths of 1 KB made a 47 MB answer; five in one batch pushed the
// process past a gigabyte). Here, on PGlite and Postgres, a real trainer floods its task with
// long artifact paths (as many as the service's artifact limits accept); its replay comes in
// pages bounded in count and in bytes that together are the whole history; and a batch of five
// replays is refused as a whole, before any of them runs.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RouterOutputs, TrainyardClient } from '@trainyard/client';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { REPLAY_PAGE_MAX_BYTES } from '../src/schemas';
import { REPO_ROOT, simulated, startServer, type RunningServer } from './harness';
import { eventsOf, rejection, serverOutputOnFailure, waitTerminal } from './lifecycle-support';

const FLOOD_TRAINER = join(REPO_ROOT, 'services/server/test/fixtures/artifact-flood-trainer.mjs');

type ReplayPage = RouterOutputs['events']['replay'];

/** One GET of /trpc (a batch when several procedures), as the wire has it: status and raw body. */
async function rawGet(s: RunningServer, procs: string[], inputs: unknown[]): Promise<{ status: number; body: string }> {
  const input = procs.length === 1 ? inputs[0] : Object.fromEntries(inputs.map((v, i) => [String(i), v]));
  const batch = procs.length === 1 ? '' : 'batch=1&';
  const res = await fetch(`${s.url}/trpc/${procs.join(',')}?${batch}input=${encodeURIComponent(JSON.stringify(input))}`);
  return { status: res.status, body: await res.text() };
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`replay limits on ${backend.kind}`, () => {
    let s: RunningServer;
    let c: TrainyardClient;
    let taskId: string;
    beforeAll(async () => {
      s = await startServer({
        backend,
        env: { TRAINYARD_TRAINER: JSON.stringify(['node', FLOOD_TRAINER]), TRAINYARD_ARTIFACTS_MAX_PER_TASK: '300' },
      });
      c = s.client;
      const t = await c.tasks.create.mutate(simulated({ steps: 1 }, { name: 'artifact flood' }));
      taskId = t.id;
      const done = await waitTerminal(c, taskId);
      expect(done.status).toBe('COMPLETED');
    });
    serverOutputOnFailure(() => s);
    afterAll(async () => {
      await s?.dispose();
    });

    it('a replay comes in pages bounded in steps and in bytes, which together are the whole history', async () => {
      const final = await c.tasks.get.query({ id: taskId });
      // As many as the limits accepted, each path about 900 characters.
      expect(final.artifacts.length).toBeGreaterThanOrEqual(50);
      const log = await eventsOf(c, taskId);

      const steps: ReplayPage['steps'] = [];
      let after: string | null = null;
      let pages = 0;
      for (;;) {
        const input: { taskId: string; afterPosition?: string } = { taskId, ...(after ? { afterPosition: after } : {}) };
        const raw = await rawGet(s, ['events.replay'], [input]);
        expect(raw.status).toBe(200);
        // The page's steps stay under the byte bound; the answer repeats the last state once more.
        expect(raw.body.length).toBeLessThan(2 * REPLAY_PAGE_MAX_BYTES + 100_000);
        const page = (JSON.parse(raw.body) as { result: { data: ReplayPage } }).result.data;
        expect(page.steps.length).toBeGreaterThan(0);
        expect(page.steps.length).toBeLessThanOrEqual(100);
        expect(JSON.stringify(page.steps).length).toBeLessThanOrEqual(REPLAY_PAGE_MAX_BYTES + page.steps.length + 2);
        expect(page.state).toEqual(page.steps[page.steps.length - 1]!.state);
        steps.push(...page.steps);
        pages++;
        if (!page.nextCursor) break;
        expect(page.nextCursor).toBe(page.steps[page.steps.length - 1]!.event.position);
        after = page.nextCursor;
      }
      // Unpaged, the states alone would be about n²/2 paths of 900 characters.
      const n = final.artifacts.length;
      expect(pages).toBeGreaterThanOrEqual(Math.floor((n * n * 900) / 2 / REPLAY_PAGE_MAX_BYTES));
      expect(steps.map((x) => x.event.position)).toEqual(log.map((e) => e.position));
      expect(steps[steps.length - 1]!.state).toEqual(final);
      const counts = steps.map((x) => x.state.artifacts.length);
      for (let k = 1; k < counts.length; k++) expect(counts[k]).toBeGreaterThanOrEqual(counts[k - 1]!);

      // The limit is honoured and bounded; paging and a point in time do not mix.
      const two = await c.events.replay.query({ taskId, limit: 2 });
      expect(two.steps).toHaveLength(2);
      expect(two.nextCursor).toBe(two.steps[1]!.event.position);
      const tooMany = await rejection(c.events.replay.query({ taskId, limit: 501 }));
      expect(tooMany.code).toBe('BAD_REQUEST');
      expect(tooMany.fieldErrors?.limit?.[0]).toContain('at most 500');
      const mixed = await rejection(c.events.replay.query({ taskId, afterPosition: log[0]!.position, atPosition: log[1]!.position }));
      expect(mixed.code).toBe('BAD_REQUEST');
      expect(Object.keys(mixed.fieldErrors ?? {})).toContain('afterPosition');
    });

    it('five replays in one batch are refused as a whole with TOO_MANY_REQUESTS; two still go together', async () => {
      const five = Array.from({ length: 5 }, () => ({ taskId }));
      const raw = await rawGet(
        s,
        five.map(() => 'events.replay'),
        five,
      );
      expect(raw.status).toBe(429);
      // Small: no replay ran.
      expect(raw.body.length).toBeLessThan(20_000);
      const answers = JSON.parse(raw.body) as { error: { message: string; data: { code: string } } }[];
      expect(answers).toHaveLength(5);
      for (const a of answers) {
        expect(a.error.data.code).toBe('TOO_MANY_REQUESTS');
        expect(a.error.message).toContain('events.replay ×5');
        expect(a.error.message).toContain('separate requests');
      }
      // The typed client batches queries made together: the same refusal, one per call.
      const viaClient = await Promise.allSettled(five.map((input) => c.events.replay.query(input)));
      for (const r of viaClient) {
        expect(r.status).toBe('rejected');
        expect((r as PromiseRejectedResult).reason.data?.code).toBe('TOO_MANY_REQUESTS');
      }
      // A batch within the budget goes through.
      const pair = await Promise.all([c.events.replay.query({ taskId, limit: 3 }), c.events.replay.query({ taskId, limit: 3 })]);
      expect(pair.map((p) => p.steps.length)).toEqual([3, 3]);
    });
  });
}
