// Live updates end to end, over real HTTP (SSE) with the typed client, on PGlite and Postgres:
// task events and progress as they are committed, log lines while the trainer runs, resuming a
// subscription from the last id seen without a gap or a repeat, and replaying a task's history.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RouterOutputs, TaskView, TrainyardClient } from '@trainyard/client';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { eventually, simulated, startServer, type RunningServer } from './harness';
import {
  collect,
  drain,
  eventsOf,
  headPosition,
  serverOutputOnFailure,
  sleep,
  typesOf,
  waitFor,
  waitTerminal,
  WAIT_MS,
  type StoredEvent,
} from './lifecycle-support';

/** What onUpdate / onLogs deliver as `data` (the tracked `id` comes next to it). */
type Update = { event: StoredEvent; task: TaskView | null };
type LogLine = RouterOutputs['tasks']['logs']['lines'][number];

function onUpdate(
  client: TrainyardClient,
  input: { taskId: string; lastEventId?: string },
  until?: (items: { id: string; data: Update }[]) => boolean,
) {
  return collect<Update>((h) => client.tasks.onUpdate.subscribe(input, { onData: h.onData, onError: h.onError }), until);
}

function onLogs(client: TrainyardClient, id: string) {
  return collect<LogLine>((h) => client.tasks.onLogs.subscribe({ id }, { onData: h.onData, onError: h.onError }));
}

const isEnd = (type: string) => ['TaskCompleted', 'TaskFailed', 'TaskCancelled'].includes(type);

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`subscriptions on ${backend.kind}`, () => {
    let s: RunningServer;
    let c: TrainyardClient;
    const subs: { stop(): void }[] = [];
    beforeAll(async () => {
      s = await startServer({ backend });
      c = s.client;
      // Something in the log, so headPosition() has a starting point.
      await waitTerminal(c, (await c.tasks.create.mutate(simulated({ steps: 1, stepMs: 0 }, { name: 'warm-up' }))).id);
    });
    serverOutputOnFailure(() => s);
    afterEach(async () => {
      for (const sub of subs.splice(0)) sub.stop();
      await drain(c);
    });
    afterAll(async () => {
      await s?.dispose();
    });

    it('onUpdate delivers the task events as they are committed, with progress rising before COMPLETED; replay folds them', async () => {
      const from = await headPosition(c);
      const t = await c.tasks.create.mutate(simulated({ steps: 12, stepMs: 200 }, { name: 'watched' }));
      const sub = onUpdate(c, { taskId: t.id, lastEventId: from }, (items) => items.some((i) => isEnd(i.data.event.type)));
      subs.push(sub);
      await eventually(async () => sub.stopped, 'the subscription to see the task end', WAIT_MS);
      expect(sub.errors).toEqual([]);

      const got = sub.items;
      // Ids are the events' log positions, each event carries its task.
      for (const i of got) {
        expect(i.id).toBe(i.data.event.position);
        expect(i.data.event.streamId).toBe(t.id);
        expect(i.data.task?.id).toBe(t.id);
      }
      const types = got.map((i) => i.data.event.type);
      expect(types.slice(0, 4)).toEqual(['TaskSubmitted', 'TaskAssigned', 'TrainerSpawned', 'TrainingStarted']);
      expect(types[types.length - 1]).toBe('TaskCompleted');
      const progress = got.filter((i) => i.data.event.type === 'ProgressRecorded');
      expect(progress.length, JSON.stringify(types)).toBeGreaterThanOrEqual(2);
      const steps = progress.map((i) => (i.data.event.data as { step: number }).step);
      for (let k = 1; k < steps.length; k++) expect(steps[k]).toBeGreaterThan(steps[k - 1]!);
      expect(steps[steps.length - 1]).toBe(12);
      // Progress arrived before the end, and the task the last event carries is COMPLETED at 100 %.
      expect(types.indexOf('ProgressRecorded')).toBeLessThan(types.indexOf('TaskCompleted'));
      const last = got[got.length - 1]!.data.task!;
      expect(last).toMatchObject({ status: 'COMPLETED', progress: { percent: 100 } });
      // Exactly the task's events, in log order.
      const log = await eventsOf(c, t.id);
      expect(got.map((i) => i.id)).toEqual(log.map((e) => e.position));

      // events.replay: the state after each event, ending in the final state.
      const replay = await c.events.replay.query({ taskId: t.id });
      expect(replay.steps.map((x) => x.event.position)).toEqual(log.map((e) => e.position));
      const statuses = replay.steps.map((x) => x.state.status);
      expect(statuses[0]).toBe('PENDING');
      expect(statuses).toContain('PREPARING');
      expect(statuses).toContain('TRAINING');
      const percents = replay.steps.filter((x) => x.event.type === 'ProgressRecorded').map((x) => x.state.progress.percent);
      for (let k = 1; k < percents.length; k++) expect(percents[k]).toBeGreaterThan(percents[k - 1]!);
      const final = await c.tasks.get.query({ id: t.id });
      expect(replay.state).toEqual(final);
      expect(replay.event?.type).toBe('TaskCompleted');

      // At a position: the state right after that event.
      const training = log.find((e) => e.type === 'TrainingStarted')!;
      const at = await c.events.replay.query({ taskId: t.id, atPosition: training.position });
      expect(at.steps).toEqual([]);
      expect(at.event?.position).toBe(training.position);
      expect(at.state).toMatchObject({ status: 'TRAINING', finishedAt: null });
      expect(at.state!.progress.percent).toBe(0);
      const firstProgress = log.find((e) => e.type === 'ProgressRecorded')!;
      const atProgress = await c.events.replay.query({ taskId: t.id, atPosition: firstProgress.position });
      expect(atProgress.state).toMatchObject({ status: 'TRAINING' });
      expect(atProgress.state!.progress.percent).toBeGreaterThan(0);
      expect(atProgress.state!.progress.percent).toBeLessThan(100);
    });

    it('onLogs delivers log lines while the task is still running', async () => {
      const t = await c.tasks.create.mutate(simulated({ steps: 30, stepMs: 150, logLinesPerStep: 2 }, { name: 'chatty' }));
      const logs = onLogs(c, t.id);
      subs.push(logs);
      await eventually(async () => logs.items.some((i) => /^step \d+ log/.test(i.data.line)), 'step log lines to arrive', WAIT_MS);
      // The trainer had 30 steps to go through: it was still running when lines arrived.
      const meanwhile = await c.tasks.get.query({ id: t.id });
      expect(['PREPARING', 'TRAINING']).toContain(meanwhile.status);

      await waitTerminal(c, t.id);
      const all = await c.tasks.logs.query({ id: t.id, limit: 5000 });
      await eventually(async () => logs.items.length >= all.lines.length, 'every line to arrive', WAIT_MS);
      expect(logs.errors).toEqual([]);
      // Ids are line numbers, in order, no repeats; protocol lines are left out; both streams come.
      const seqs = logs.items.map((i) => Number(i.id));
      expect(seqs).toEqual(logs.items.map((i) => i.data.seq));
      for (let k = 1; k < seqs.length; k++) expect(seqs[k]).toBeGreaterThan(seqs[k - 1]!);
      expect(logs.items.map((i) => i.data.line)).toEqual(all.lines.map((l) => l.line));
      expect(logs.items.some((i) => i.data.line.startsWith('{"type"'))).toBe(false);
      expect(logs.items.filter((i) => /^step \d+ log/.test(i.data.line))).toHaveLength(60);
      expect(new Set(logs.items.map((i) => i.data.stream))).toEqual(new Set(['stdout', 'stderr']));
    });

    it('reconnecting with the last id seen misses nothing and repeats nothing', async () => {
      const from = await headPosition(c);
      const t = await c.tasks.create.mutate(simulated({ steps: 30, stepMs: 150 }, { name: 'reconnect' }));
      // First connection: stop right after the first progress event.
      const first = onUpdate(c, { taskId: t.id, lastEventId: from }, (items) =>
        items.some((i) => i.data.event.type === 'ProgressRecorded'),
      );
      subs.push(first);
      await eventually(async () => first.stopped, 'the first connection to see progress', WAIT_MS);
      const lastSeen = first.items[first.items.length - 1]!.id;
      // While nobody listens the task goes on and commits more events.
      const seenFirst = first.items.length;
      await eventually(async () => (await eventsOf(c, t.id)).length > seenFirst, 'events committed while disconnected', WAIT_MS);
      await sleep(500);

      const second = onUpdate(c, { taskId: t.id, lastEventId: lastSeen }, (items) => items.some((i) => isEnd(i.data.event.type)));
      subs.push(second);
      await eventually(async () => second.stopped, 'the second connection to see the end', WAIT_MS);
      expect([...first.errors, ...second.errors]).toEqual([]);
      // Events committed while nobody listened arrive on the second connection.
      expect(second.items.map((i) => i.data.event.type)).toContain('ProgressRecorded');

      const ids = [...first.items, ...second.items].map((i) => i.id);
      expect(new Set(ids).size).toBe(ids.length);
      const log = await eventsOf(c, t.id);
      expect(ids).toEqual(log.map((e) => e.position));
      expect(typesOf(log)[log.length - 1]).toBe('TaskCompleted');
    });

    it('onUpdate with a lastEventId that is not in the log is a BAD_REQUEST', async () => {
      const errors: unknown[] = [];
      const sub = c.tasks.onUpdate.subscribe({ lastEventId: '999999999' }, { onData: () => {}, onError: (e) => errors.push(e) });
      subs.push({ stop: () => sub.unsubscribe() });
      await eventually(async () => errors.length > 0, 'the subscription to fail', WAIT_MS);
      expect((errors[0] as Error).message).toContain('no event at position 999999999');
    });

    it('a task that is cancelled while watched ends the stream of its events with TaskCancelled', async () => {
      const from = await headPosition(c);
      const t = await c.tasks.create.mutate(simulated({ steps: 200, stepMs: 100 }, { name: 'watched cancel' }));
      const sub = onUpdate(c, { taskId: t.id, lastEventId: from }, (items) => items.some((i) => isEnd(i.data.event.type)));
      subs.push(sub);
      await waitFor(c, t.id, 'TRAINING');
      await c.tasks.cancel.mutate({ id: t.id });
      await eventually(async () => sub.stopped, 'the subscription to see the cancel', WAIT_MS);
      const types = sub.items.map((i) => i.data.event.type);
      // The trainer may still report progress between the stop request and its exit.
      expect(types[types.length - 1]).toBe('TaskCancelled');
      expect(types.indexOf('StopRequested')).toBeGreaterThan(types.indexOf('TrainingStarted'));
      expect(types.filter((x) => x === 'StopRequested')).toHaveLength(1);
      expect(sub.items[sub.items.length - 1]!.data.task?.status).toBe('CANCELLED');
    });
  });
}
