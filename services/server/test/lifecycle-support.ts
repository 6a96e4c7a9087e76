// Helpers shared by lifecycle.e2e.spec.ts and subscriptions.e2e.spec.ts: waiting for a task's
// status, reading a task's audit log, collecting subscription data, and leaving a shared server
// idle between tests (nothing queued or running), so one test's tasks never hold the slot of the next.
import { chmodSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { errorInfo, OPEN_STATUSES, TERMINAL_STATUSES, type RouterOutputs, type TaskView, type TrainyardClient } from '@trainyard/client';
import { eventually, type RunningServer } from './harness';

export type StoredEvent = RouterOutputs['events']['list']['events'][number];
export type TaskStatus = TaskView['status'];

/** Generous: trainers and servers share two cores with the other spec files. */
export const WAIT_MS = 60_000;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wait until the task is in one of `statuses` (and `extra` holds, if given); returns it. */
export function waitFor(
  client: TrainyardClient,
  id: string,
  statuses: TaskStatus | readonly TaskStatus[],
  extra: (t: TaskView) => boolean = () => true,
  timeoutMs = WAIT_MS,
): Promise<TaskView> {
  const want = typeof statuses === 'string' ? [statuses] : statuses;
  return eventually(
    async () => {
      const t = await client.tasks.get.query({ id });
      return want.includes(t.status) && extra(t) ? t : null;
    },
    `task ${id} to be ${want.join(' or ')}`,
    timeoutMs,
  );
}

export const waitTerminal = (client: TrainyardClient, id: string, timeoutMs = WAIT_MS) =>
  waitFor(client, id, TERMINAL_STATUSES, () => true, timeoutMs);

/** Every event of one task (or of the whole log), oldest first, over all pages. */
export async function eventsOf(client: TrainyardClient, taskId?: string): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  let cursor: string | null = null;
  for (;;) {
    const page: RouterOutputs['events']['list'] = await client.events.list.query({
      ...(taskId ? { taskId } : {}),
      cursor,
      limit: 1000,
    });
    out.push(...page.events);
    if (!page.nextCursor) return out;
    cursor = page.nextCursor;
  }
}

/** Position of the newest event in the log (a subscription resumed from it misses nothing later). */
export async function headPosition(client: TrainyardClient): Promise<string> {
  const all = await eventsOf(client);
  const last = all[all.length - 1];
  if (!last) throw new Error('the log is empty: create something first');
  return last.position;
}

export const typesOf = (events: readonly StoredEvent[]) => events.map((e) => e.type);
export const byType = (events: readonly StoredEvent[], type: StoredEvent['type']) => events.find((e) => e.type === type);
export const pos = (e: { position: string } | undefined) => BigInt(e?.position ?? -1);

/** The error a promise rejects with, as errorInfo() reads it (fails the test if it resolves). */
export async function rejection(p: Promise<unknown>) {
  try {
    await p;
  } catch (err) {
    return { ...errorInfo(err), raw: err as { data?: Record<string, unknown> } };
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** When a test fails, print the end of the server's output (and whether it is still alive). */
export function serverOutputOnFailure(get: () => RunningServer | undefined): void {
  afterEach((ctx) => {
    const s = get();
    if (!s || ctx.task.result?.state !== 'fail') return;
    const state = s.proc.exitCode !== null || s.proc.signalCode !== null ? `exited (${s.proc.exitCode ?? s.proc.signalCode})` : 'running';
    console.error(`--- server ${s.url} is ${state}; its last output:\n${s.output.slice(-60).join('\n')}\n---`);
  });
}

/**
 * Leave the server idle: cancel whatever is not finished yet and wait until every task is
 * finished, so the next test starts with a free slot and an empty queue.
 */
export async function drain(client: TrainyardClient): Promise<void> {
  const active = await client.tasks.list.query({ status: [...OPEN_STATUSES], limit: 200 });
  for (const t of active.items) {
    await client.tasks.cancel.mutate({ id: t.id, reason: 'test cleanup' }).catch(() => {
      /* already stopping or finished */
    });
  }
  await eventually(
    async () => (await client.tasks.list.query({ status: [...OPEN_STATUSES], limit: 1 })).items.length === 0,
    'every task to be finished',
    WAIT_MS,
  );
}

/**
 * A fake nvidia-smi: a shell script that prints gpus.csv / apps.csv from its folder, so a test
 * can change what "the GPU" shows while the server runs (see test/fixtures/nvidia-smi/README.md).
 */
export interface FakeGpu {
  path: string;
  set(gpusCsv: string, appsCsv: string): void;
}

export function fakeNvidiaSmi(dir: string): FakeGpu {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'nvidia-smi');
  const gpus = join(dir, 'gpus.csv');
  const apps = join(dir, 'apps.csv');
  writeFileSync(
    path,
    `#!/bin/sh
# Fake nvidia-smi for lifecycle.e2e.spec.ts.
case "$*" in
  --query-gpu=*) cat '${gpus}' ;;
  --query-compute-apps=*) cat '${apps}' ;;
  *) echo "fake nvidia-smi: unexpected arguments: $*" >&2; exit 2 ;;
esac
`,
  );
  chmodSync(path, 0o755);
  // Replace whole files (write + rename): a probe running meanwhile must never read a torn,
  // empty file (that would read as "no GPU" and unblock the slot for a moment).
  const put = (file: string, text: string) => {
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  };
  return { path, set: (g, a) => (put(gpus, g), put(apps, a)) };
}

/** What a subscription delivered so far; stop() unsubscribes. */
export interface Collected<T> {
  items: { id: string; data: T }[];
  errors: unknown[];
  stopped: boolean;
  stop(): void;
}

/**
 * Subscribe and collect tracked data. `until` (optional) is checked after each item: when it
 * returns true the subscription stops right there, so nothing after that item is recorded.
 */
export function collect<T>(
  subscribe: (handlers: { onData: (d: { id: string; data: T }) => void; onError: (err: unknown) => void }) => { unsubscribe(): void },
  until?: (items: { id: string; data: T }[]) => boolean,
): Collected<T> {
  let sub: { unsubscribe(): void } | null = null;
  let stopAsap = false;
  const c: Collected<T> = {
    items: [],
    errors: [],
    stopped: false,
    stop() {
      if (c.stopped) return;
      c.stopped = true;
      if (sub) sub.unsubscribe();
      else stopAsap = true;
    },
  };
  sub = subscribe({
    onData: (d) => {
      if (c.stopped) return;
      c.items.push(d);
      if (until?.(c.items)) c.stop();
    },
    onError: (err) => c.errors.push(err),
  });
  if (stopAsap) sub.unsubscribe();
  return c;
}
