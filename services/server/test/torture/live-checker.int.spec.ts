// LiveChecker (invariants 1 and 6, live) can fail, and says which invariant failed: it is pointed
// at a stand-in API serving doctored read models (two holders of one slot, an active task with no
// slot, a queue beside a free slot) and at real processes posing as trainers of a data folder
// (an orphan, a stranger, two at once), and must record exactly the violations named here.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TaskRecord } from '@trainyard/domain';
import { LiveChecker, Violations } from './invariants';

/** What the stand-in API answers: tasks (as much of a record as the checker reads) and the queue. */
interface Doctored {
  tasks: Partial<TaskRecord>[];
  queue: { devices: { id: string; holders: { taskId: string }[]; blockedReason: string | null }[]; queuedCount: number };
}

let state: Doctored;
let server: Server;
let url: string;
let dataDir: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'trainyard-live-checker-'));
  server = createServer((req, res) => {
    const u = new URL(req.url!, 'http://x');
    const proc = u.pathname.replace('/trpc/', '');
    const input = u.searchParams.has('input') ? JSON.parse(u.searchParams.get('input')!) : undefined;
    let data: unknown;
    if (proc === 'tasks.list') {
      const statuses: string[] | undefined = input?.status;
      data = { items: state.tasks.filter((t) => !statuses || statuses.includes(t.status!)), nextCursor: null };
    } else if (proc === 'queue.get') {
      data = { devices: state.queue.devices, queued: [], queuedCount: state.queue.queuedCount };
    } else if (proc === 'tasks.get') {
      data = state.tasks.find((t) => t.id === input.id);
    }
    res.setHeader('content-type', 'application/json');
    if (data === undefined) {
      res.statusCode = 404;
      res.end(JSON.stringify({ error: { message: 'no such task', data: { code: 'NOT_FOUND', httpStatus: 404 } } }));
    } else res.end(JSON.stringify({ result: { data } }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(dataDir, { recursive: true, force: true });
});

/** A real process that the checker's /proc scan takes for a trainer of `taskId` in our data folder. */
async function fakeTrainer(taskId: string): Promise<number> {
  const c = spawn('sleep', ['60'], {
    env: { PATH: process.env.PATH, TRAINYARD_TASK_SPEC: join(dataDir, 'runs', taskId, 'spec.json'), TRAINYARD_TASK_ID: taskId },
    stdio: 'ignore',
  });
  children.push(c);
  await new Promise((r) => c.once('spawn', r));
  return c.pid!;
}

const grant = (gpuIndex: number) => ({ deviceId: `gpu${gpuIndex}`, gpuIndex, uuid: null, migProfile: null, memoryMb: 0, exclusive: true });
const task = (id: string, status: TaskRecord['status'], slotId: number | null, trainerPid: number | null = null): Partial<TaskRecord> => ({
  id,
  status,
  devices: slotId === null ? [] : [grant(slotId)],
  spec: { resources: { gpus: 1, memoryMb: null, shared: false, memorySource: null } } as TaskRecord['spec'],
  trainer: trainerPid === null ? null : { pid: trainerPid, startTime: '0', runDir: join(dataDir, 'runs', id) },
});
const freeSlot = (slotId: number) => ({ id: `gpu${slotId}`, holders: [], blockedReason: null });
const heldSlot = (slotId: number, id: string) => ({ id: `gpu${slotId}`, holders: [{ taskId: id }], blockedReason: null });

async function check(slots: number, times = 1, opts = { stallMs: 60_000, stuckPreparingMs: 60_000 }) {
  const v = new Violations(Date.now(), () => {});
  const live = new LiveChecker(v, slots, [dataDir], opts);
  for (let i = 0; i < times; i++) {
    if (i) await new Promise((r) => setTimeout(r, 20));
    expect(await live.check([url], `step ${i}`)).toBe(true);
  }
  return { fired: v.list.map((x) => x.invariant), messages: v.list.map((x) => x.message) };
}

describe('LiveChecker', () => {
  it('given a running task on its slot with its own trainer, nothing fires', async () => {
    const pid = await fakeTrainer('a');
    state = { tasks: [task('a', 'TRAINING', 0, pid)], queue: { devices: [heldSlot(0, 'a')], queuedCount: 0 } };
    expect((await check(1)).fired).toEqual([]);
  });

  it('1: two tasks hold the one slot', async () => {
    state = { tasks: [task('a', 'TRAINING', 0, 1), task('b', 'PREPARING', 0, 2)], queue: { devices: [heldSlot(0, 'a')], queuedCount: 0 } };
    const r = await check(1);
    expect(r.fired).toEqual(['1', '1']);
    expect(r.messages).toEqual([
      expect.stringMatching(/2 tasks hold a device exclusively with 1 device/),
      expect.stringMatching(/gpu0 is held by 2 tasks, one exclusively: a, b/),
    ]);
  });

  it('1: an active task that holds no slot', async () => {
    state = { tasks: [task('a', 'TRAINING', null, 1)], queue: { devices: [freeSlot(0)], queuedCount: 0 } };
    const r = await check(1);
    expect(r.fired).toEqual(['1']);
    expect(r.messages[0]).toMatch(/task a is TRAINING but holds no device/);
  });

  it('1: a trainer alive for a task that has ended (an orphan)', async () => {
    const pid = await fakeTrainer('z');
    state = { tasks: [task('z', 'COMPLETED', null)], queue: { devices: [freeSlot(0)], queuedCount: 0 } };
    const r = await check(1);
    expect(r.fired).toEqual(['1']);
    expect(r.messages[0]).toMatch(new RegExp(`trainer pid ${pid} is alive for task z, which is COMPLETED and holds no device`));
  });

  it('1: a trainer that is not the one its task records (a stranger), and two at once', async () => {
    const own = await fakeTrainer('a');
    const stranger = await fakeTrainer('a');
    state = { tasks: [task('a', 'TRAINING', 0, own)], queue: { devices: [heldSlot(0, 'a')], queuedCount: 0 } };
    const r = await check(1);
    expect(r.fired).toEqual(['1', '1', '1']);
    expect(r.messages).toEqual([
      expect.stringMatching(new RegExp(`records trainer pid ${own} but pid ${stranger} also trains it`)),
      expect.stringMatching(/2 live trainers for task a/),
      expect.stringMatching(/2 trainers alive at once with 1 device/),
    ]);
  });

  it('6: a free slot beside a queue for longer than the stall limit', async () => {
    state = { tasks: [task('q', 'QUEUED', null)], queue: { devices: [freeSlot(0)], queuedCount: 1 } };
    const r = await check(1, 2, { stallMs: 0, stuckPreparingMs: 60_000 });
    expect(r.fired).toEqual(['6']);
    expect(r.messages[0]).toMatch(/1 free device\(s\) while 1 task\(s\) queued/);
  });

  it('6: a task that holds a slot without a trainer for longer than the limit', async () => {
    state = { tasks: [task('a', 'PREPARING', 0)], queue: { devices: [heldSlot(0, 'a')], queuedCount: 0 } };
    const r = await check(1, 2, { stallMs: 60_000, stuckPreparingMs: 0 });
    expect(r.fired).toEqual(['6']);
    expect(r.messages[0]).toMatch(/task a has held gpu0 for \d+ ms without a trainer/);
  });

  it('given no instance answers, nothing is checked and nothing fires', async () => {
    const v = new Violations(Date.now(), () => {});
    const live = new LiveChecker(v, 1, [dataDir], { stallMs: 0, stuckPreparingMs: 0 });
    expect(await live.check(['http://127.0.0.1:1'], 'down')).toBe(false);
    expect([live.checks, v.list.length]).toEqual([0, 0]);
  });
});
