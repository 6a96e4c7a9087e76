// The scheduling policy, given/when/then: given these devices (with holders) and this queue,
// when the policy runs at `now`, then these tasks start on these devices and the rest wait for
// these reasons.
import { describe, expect, it } from 'vitest';
import {
  backfillPolicy,
  fifoOrder,
  fifoPolicy,
  type Account,
  type DeviceHolder,
  type DeviceView,
  type QueuedTaskView,
  type SchedulingInput,
} from '.';

const GB = 1024;
const MIN = 60_000;
const NOW = Date.parse('2026-12-04T12:00:00Z');

const gpu = (i: number, memoryGb = 80, holders: DeviceHolder[] = [], over: Partial<DeviceView> = {}): DeviceView => ({
  id: `gpu${i}`,
  gpuIndex: i,
  uuid: `GPU-${i}`,
  name: 'A100',
  memoryMb: memoryGb * GB,
  migProfile: null,
  externalMemoryMb: 0,
  blockedReason: null,
  holders,
  ...over,
});
const mig = (i: number, n: number, profile: string, memoryGb: number, holders: DeviceHolder[] = []): DeviceView => ({
  ...gpu(i, memoryGb, holders),
  id: `gpu${i}/mig${n}`,
  uuid: `MIG-${i}-${n}`,
  migProfile: profile,
});
const held = (taskId: string, endsInMin: number | null, memoryGb = 80, exclusive = true): DeviceHolder => ({
  taskId,
  memoryMb: memoryGb * GB,
  exclusive,
  endsBy: endsInMin === null ? null : NOW + endsInMin * MIN,
});
const task = (
  taskId: string,
  over: { gpus?: number; memoryGb?: number; shared?: boolean; timeoutMin?: number; owner?: string; priority?: number } = {},
): QueuedTaskView => ({
  taskId,
  queuedPosition: null,
  request: { gpus: over.gpus ?? 1, memoryMb: over.memoryGb === undefined ? null : over.memoryGb * GB, shared: over.shared ?? false },
  timeoutMs: (over.timeoutMin ?? 60) * MIN,
  ...(over.owner ? { owner: over.owner } : {}),
  ...(over.priority !== undefined ? { priority: over.priority } : {}),
});
const when = (given: Omit<SchedulingInput, 'now'>, policy = backfillPolicy) => {
  const d = policy.schedule({ ...given, now: NOW });
  return {
    started: Object.fromEntries(d.assignments.map((a) => [a.taskId, a.devices.map((g) => g.deviceId)])),
    waiting: Object.fromEntries([...d.waiting].map(([id, r]) => [id, r.code])),
    decision: d,
  };
};

describe('placement', () => {
  it('given free GPUs, a 1-GPU task takes the lowest one, whole and exclusive', () => {
    const { decision } = when({ devices: [gpu(0), gpu(1)], queue: [task('a')] });
    expect(decision.assignments[0]!.devices).toEqual([
      { deviceId: 'gpu0', gpuIndex: 0, uuid: 'GPU-0', migProfile: null, memoryMb: 80 * GB, exclusive: true },
    ]);
  });
  it('a 2-GPU gang starts on two devices at once', () => {
    expect(when({ devices: [gpu(0), gpu(1), gpu(2)], queue: [task('a', { gpus: 2 })] }).started).toEqual({ a: ['gpu0', 'gpu1'] });
  });
  it('a gang never holds part of its devices while it waits for the rest', () => {
    const { started, waiting, decision } = when({ devices: [gpu(0), gpu(1, 80, [held('x', 30)])], queue: [task('a', { gpus: 2 })] });
    expect(started).toEqual({});
    expect(waiting).toEqual({ a: 'WAITING_FOR_DEVICES' });
    expect(decision.waiting.get('a')!.message).toMatch(/^Needs 2 GPUs, 1 free\./);
  });
  it('a gang uses whole GPUs only, never MIG instances (CUDA shows a process one MIG instance)', () => {
    const devices = [gpu(0), mig(1, 0, '3g.40gb', 40), mig(1, 1, '3g.40gb', 40)];
    expect(when({ devices, queue: [task('a', { gpus: 2 })] }).waiting).toEqual({ a: 'NEVER_FITS' });
  });
  it('best fit: a small task takes the smallest device that fits (a MIG instance before a whole GPU)', () => {
    const devices = [gpu(0), mig(1, 0, '1g.10gb', 10), mig(1, 1, '3g.40gb', 40)];
    expect(when({ devices, queue: [task('a', { memoryGb: 20 })] }).started).toEqual({ a: ['gpu1/mig1'] });
    expect(when({ devices, queue: [task('a', { memoryGb: 8 })] }).started).toEqual({ a: ['gpu1/mig0'] });
  });
  it('with no memory figure the need is unknown: whole GPUs before MIG instances', () => {
    const devices = [mig(1, 0, '1g.10gb', 10), gpu(0)];
    expect(when({ devices, queue: [task('a')] }).started).toEqual({ a: ['gpu0'] });
  });
  it('shared tasks run side by side while their memory fits under the device less the reserve', () => {
    // 80 GB less 20 % = 64 GB for shared tasks: two of 30 GB fit, a third does not.
    const queue = [
      task('a', { shared: true, memoryGb: 30 }),
      task('b', { shared: true, memoryGb: 30 }),
      task('c', { shared: true, memoryGb: 30 }),
    ];
    const { started, waiting } = when({ devices: [gpu(0)], queue });
    expect(started).toEqual({ a: ['gpu0'], b: ['gpu0'] });
    expect(waiting).toEqual({ c: 'WAITING_FOR_DEVICES' });
  });
  it('memory held by other programs counts against what shared tasks may take', () => {
    const devices = [gpu(0, 80, [], { externalMemoryMb: 40 * GB })];
    expect(when({ devices, queue: [task('a', { shared: true, memoryGb: 30 })] }).waiting).toEqual({ a: 'WAITING_FOR_DEVICES' });
    expect(when({ devices, queue: [task('a', { shared: true, memoryGb: 20 })] }).started).toEqual({ a: ['gpu0'] });
  });
  it('exclusive tasks never share: not beside a shared task, and a shared task not beside them', () => {
    expect(when({ devices: [gpu(0, 80, [held('x', 30, 10, false)])], queue: [task('a')] }).waiting).toEqual({ a: 'WAITING_FOR_DEVICES' });
    expect(when({ devices: [gpu(0, 80, [held('x', 30)])], queue: [task('a', { shared: true, memoryGb: 1 })] }).started).toEqual({});
  });
  it('a device another program holds takes no work, and the head says so', () => {
    const devices = [gpu(0, 80, [], { blockedReason: 'GPU 0 (A100): 70 of 80 GB held by other programs.' })];
    const { waiting, decision } = when({ devices, queue: [task('a')] });
    expect(waiting).toEqual({ a: 'EXTERNAL_MEMORY' });
    expect(decision.waiting.get('a')!.message).toMatch(/GPU 0 is held by another program/);
  });
  it('a request no device of this host can ever meet waits as NEVER_FITS and does not hold up the queue', () => {
    const { started, waiting, decision } = when({ devices: [gpu(0), gpu(1)], queue: [task('big', { gpus: 4 }), task('a')] }, fifoPolicy);
    expect([started, waiting]).toEqual([{ a: ['gpu0'] }, { big: 'NEVER_FITS' }]);
    expect(decision.waiting.get('big')!.message).toMatch(/fewer GPUs/);
  });
});

describe('order: FIFO and EASY backfill', () => {
  const busy = (endsInMin: number) => [gpu(0, 80, [held('x', endsInMin)]), gpu(1, 80, [held('y', endsInMin)]), gpu(2), gpu(3)];

  it('fifo: the queue starts in order; a blocked head holds everyone behind it', () => {
    const queue = [task('head', { gpus: 4 }), task('short', { timeoutMin: 5 })];
    const { started, waiting } = when({ devices: busy(30), queue }, fifoPolicy);
    expect([started, waiting]).toEqual([{}, { head: 'WAITING_FOR_DEVICES', short: 'BEHIND_HEAD' }]);
  });
  it('backfill: the head reserves the devices it will get when running tasks reach their deadlines', () => {
    const { decision } = when({ devices: busy(30), queue: [task('head', { gpus: 4 })] });
    expect(decision.reservation).toEqual({ taskId: 'head', startAt: NOW + 30 * MIN, deviceIds: ['gpu0', 'gpu1', 'gpu2', 'gpu3'] });
    expect(decision.waiting.get('head')).toMatchObject({ reservedStart: NOW + 30 * MIN });
  });
  it('backfill: a short task that ends before the reserved start runs now on a reserved device', () => {
    const queue = [task('head', { gpus: 4 }), task('short', { timeoutMin: 20 })];
    const { started, decision } = when({ devices: busy(30), queue });
    expect(started).toEqual({ short: ['gpu2'] });
    expect(decision.assignments[0]!.grounds).toMatchObject({
      policy: 'backfill',
      backfilled: true,
      ahead: 1,
      reservation: { taskId: 'head' },
    });
  });
  it('backfill: a long task that could delay the head waits, reserved for the head', () => {
    const queue = [task('head', { gpus: 4 }), task('long', { timeoutMin: 120 })];
    const { started, waiting, decision } = when({ devices: busy(30), queue });
    expect([started, waiting]).toEqual([{}, { head: 'WAITING_FOR_DEVICES', long: 'RESERVED_FOR_HEAD' }]);
    expect(decision.waiting.get('long')!.message).toMatch(/^GPU 0, GPU 1, GPU 2, GPU 3 are reserved for task head from 12:30 UTC/);
  });
  it('backfill: a long task may use a device the head does not need', () => {
    // The head needs 2 GPUs and gets gpu0 and gpu1 when they free; gpu2 and gpu3 are spare.
    const devices = [gpu(0, 40, [held('x', 30, 40)]), gpu(1, 40, [held('y', 30, 40)]), gpu(2, 80, [held('z', 90)]), gpu(3)];
    const queue = [task('head', { gpus: 2 }), task('long', { timeoutMin: 600 })];
    const { started, decision } = when({ devices, queue });
    expect(decision.reservation!.deviceIds).toEqual(['gpu0', 'gpu1']);
    expect(started).toEqual({ long: ['gpu3'] });
  });
  it('backfill: a shared task outliving the reservation may stay on a reserved device if it leaves the head its share', () => {
    const devices = [gpu(0, 80, [held('x', 30, 20, false), held('y', 300, 20, false)])];
    const queue = [task('head', { shared: true, memoryGb: 30 }), task('fits', { shared: true, memoryGb: 10, timeoutMin: 600 })];
    // 64 GB for shared tasks: 40 held now, 24 free (the head's 30 does not fit); at 30 min x has
    // gone: 20 held, the head's 30, 14 spare. A 10 GB task fits both; a 20 GB one only now.
    const { started, decision } = when({ devices, queue });
    expect(decision.reservation).toMatchObject({ taskId: 'head', startAt: NOW + 30 * MIN });
    expect(started).toEqual({ fits: ['gpu0'] });
    const tooBig = when({ devices, queue: [queue[0]!, task('big', { shared: true, memoryGb: 20, timeoutMin: 600 })] });
    expect(tooBig.waiting).toEqual({ head: 'WAITING_FOR_DEVICES', big: 'RESERVED_FOR_HEAD' });
  });
  it('a holder with no deadline never counts as leaving: the head gets no reservation and the queue behind it goes on', () => {
    const devices = [gpu(0, 80, [held('x', null)]), gpu(1)];
    const { started, decision } = when({ devices, queue: [task('head', { gpus: 2 }), task('a', { timeoutMin: 600 })] });
    expect(decision.reservation).toBeNull();
    expect(started).toEqual({ a: ['gpu1'] });
  });
  it('tasks placed earlier in the same pass count as holders until their own timeout', () => {
    // a takes gpu0 for 60 min; the head (2 GPUs) must wait for a and for x (30 min).
    const devices = [gpu(0), gpu(1, 80, [held('x', 30)])];
    const { started, decision } = when({ devices, queue: [task('a'), task('head', { gpus: 2 })] });
    expect(started).toEqual({ a: ['gpu0'] });
    expect(decision.reservation).toMatchObject({ taskId: 'head', startAt: NOW + 60 * MIN });
  });
  it('the head keeps its reserved start as backfilled tasks come and go (no starvation)', () => {
    // Replay a stream of short tasks arriving behind a big head: each pass, the reservation is
    // never later than the first one, and the head starts by then.
    let devices = busy(30);
    const first = backfillPolicy.schedule({ devices, queue: [task('head', { gpus: 4 })], now: NOW }).reservation!;
    for (let minute = 0; minute <= 30; minute += 5) {
      const now = NOW + minute * MIN;
      devices = devices.map((d) => ({ ...d, holders: d.holders.filter((h) => h.endsBy === null || h.endsBy > now) }));
      const d = backfillPolicy.schedule({ devices, queue: [task('head', { gpus: 4 }), task(`s${minute}`, { timeoutMin: 10 })], now });
      if (d.assignments.some((a) => a.taskId === 'head')) return expect(now).toBeLessThanOrEqual(first.startAt);
      expect(d.reservation!.startAt).toBeLessThanOrEqual(first.startAt);
      for (const a of d.assignments)
        devices = devices.map((dev) =>
          a.devices.some((g) => g.deviceId === dev.id)
            ? { ...dev, holders: [...dev.holders, { taskId: a.taskId, memoryMb: dev.memoryMb, exclusive: true, endsBy: now + 10 * MIN }] }
            : dev,
        );
    }
    throw new Error('the head never started');
  });
  it('look-alike tasks behind a blocked head are decided once per shape (same reason each)', () => {
    const queue = [task('head', { gpus: 4 }), ...Array.from({ length: 50 }, (_, i) => task(`l${i}`, { timeoutMin: 600 }))];
    const { waiting } = when({ devices: busy(30), queue });
    expect(new Set(Object.values(waiting))).toEqual(new Set(['WAITING_FOR_DEVICES', 'RESERVED_FOR_HEAD']));
    expect(Object.keys(waiting)).toHaveLength(51);
  });
});

describe('priorities, fair share and quotas', () => {
  const account = (over: Partial<Account> = {}): Account => ({
    maxGpus: null,
    gpuHoursCap: null,
    gpuHoursUsed: 0,
    usageGpuSeconds: 0,
    weight: 1,
    ...over,
  });

  it('a higher priority goes first, whatever its place in the queue', () => {
    const queue = [task('low', { priority: 10 }), task('urgent', { priority: 40 })];
    expect(when({ devices: [gpu(0)], queue }).started).toEqual({ urgent: ['gpu0'] });
  });
  it('among equal priority, the user furthest below their share goes first; each user keeps FIFO', () => {
    const accounts = new Map([
      ['alice', account({ usageGpuSeconds: 50_000 })],
      ['bob', account({ usageGpuSeconds: 1_000 })],
    ]);
    const queue = [
      task('a1', { owner: 'alice' }),
      task('a2', { owner: 'alice' }),
      task('b1', { owner: 'bob' }),
      task('b2', { owner: 'bob' }),
    ];
    const { decision } = when({ devices: [gpu(0), gpu(1)], queue, accounts });
    expect(decision.assignments.map((a) => a.taskId)).toEqual(['b1', 'b2']);
    expect(decision.assignments[0]!.grounds).toMatchObject({ priority: 0, share: 1_000 });
  });
  it('the share counts running devices and is recomputed as the pass places tasks: two free GPUs go one to each user', () => {
    const queue = [task('a1', { owner: 'alice' }), task('a2', { owner: 'alice' }), task('b1', { owner: 'bob' })];
    expect(Object.keys(when({ devices: [gpu(0), gpu(1)], queue, accounts: new Map() }).started).sort()).toEqual(['a1', 'b1']);
  });
  it('weight: a user of weight 2 is due twice the use of one of weight 1', () => {
    const accounts = new Map([
      ['alice', account({ usageGpuSeconds: 3_000, weight: 2 })],
      ['bob', account({ usageGpuSeconds: 2_000 })],
    ]);
    const queue = [task('b1', { owner: 'bob' }), task('a1', { owner: 'alice' })];
    expect(when({ devices: [gpu(0)], queue, accounts }).started).toEqual({ a1: ['gpu0'] });
  });
  it('a task over its owner’s GPU quota waits with QUOTA and holds nobody up', () => {
    const accounts = new Map([['alice', account({ maxGpus: 1 })]]);
    const devices = [gpu(0, 80, [{ ...held('x', 30), owner: 'alice' }]), gpu(1)];
    const queue = [task('a2', { owner: 'alice' }), task('b1', { owner: 'bob' })];
    const { started, waiting, decision } = when({ devices, queue, accounts });
    expect([started, waiting]).toEqual([{ b1: ['gpu1'] }, { a2: 'QUOTA' }]);
    expect(decision.waiting.get('a2')!.message).toMatch(/^alice may use 1 GPU\(s\) at once and uses 1/);
  });
  it('a user past their GPU-hours in the window waits with QUOTA', () => {
    const accounts = new Map([['alice', account({ gpuHoursCap: 10, gpuHoursUsed: 12 })]]);
    expect(when({ devices: [gpu(0)], queue: [task('a', { owner: 'alice' })], accounts }).waiting).toEqual({ a: 'QUOTA' });
  });
  it('the backfill reservation still holds for a high-priority head', () => {
    const devices = [gpu(0, 80, [held('x', 30)]), gpu(1)];
    const queue = [task('low-long', { priority: 10, timeoutMin: 600 }), task('head', { priority: 40, gpus: 2 })];
    const { started, waiting } = when({ devices, queue });
    expect([started, waiting]).toEqual([{}, { head: 'WAITING_FOR_DEVICES', 'low-long': 'RESERVED_FOR_HEAD' }]);
  });
});

describe('preemption (priority)', () => {
  const running = (taskId: string, priority: number, startedMin: number, over: Partial<DeviceHolder> = {}): DeviceHolder => ({
    ...held(taskId, 300),
    priority,
    startedAt: NOW - (60 - startedMin) * MIN,
    preemptible: true,
    stopping: false,
    ...over,
  });
  const schedule = (devices: DeviceView[], queue: QueuedTaskView[]) =>
    backfillPolicy.schedule({ devices, queue, now: NOW, preemption: true });

  it('an urgent head that cannot start preempts the lowest-priority, most recently started task; it waits for it to stop', () => {
    const devices = [
      gpu(0, 80, [running('old-low', -10, 0)]),
      gpu(1, 80, [running('new-low', -10, 30)]),
      gpu(2, 80, [running('normal', 0, 50)]),
    ];
    const d = schedule(devices, [task('urgent', { priority: 20 })]);
    expect(d.assignments).toEqual([]);
    expect(d.preemptions).toEqual([
      {
        taskId: 'new-low',
        forTaskId: 'urgent',
        message: expect.stringMatching(/^preempted for task urgent/),
        grounds: expect.objectContaining({
          rule: 'priority',
          head: { taskId: 'urgent', owner: '', priority: 20, gpus: 1 },
          victim: { taskId: 'new-low', owner: '', priority: -10, startedAt: NOW - 30 * MIN, gpus: 1 },
          victims: ['new-low'],
          pool: 3,
        }),
      },
    ]);
  });
  it('never more than needed: a 2-GPU head takes the two lowest, not the third', () => {
    const devices = [gpu(0, 80, [running('a', -10, 0)]), gpu(1, 80, [running('b', 0, 10)]), gpu(2, 80, [running('c', -10, 20)])];
    expect(
      schedule(devices, [task('urgent', { priority: 20, gpus: 2 })])
        .preemptions.map((p) => p.taskId)
        .sort(),
    ).toEqual(['a', 'c']);
  });
  it('none while tasks already stopping will free enough; none of an equal or higher priority; none preempted too often', () => {
    expect(schedule([gpu(0, 80, [running('low', -10, 0, { stopping: true })])], [task('urgent', { priority: 20 })]).preemptions).toEqual(
      [],
    );
    expect(schedule([gpu(0, 80, [running('peer', 20, 0)])], [task('urgent', { priority: 20 })]).preemptions).toEqual([]);
    expect(
      schedule([gpu(0, 80, [running('low', -10, 0, { preemptible: false })])], [task('urgent', { priority: 20 })]).preemptions,
    ).toEqual([]);
  });
  it('off unless asked for', () => {
    expect(
      backfillPolicy.schedule({ devices: [gpu(0, 80, [running('low', -10, 0)])], queue: [task('urgent', { priority: 20 })], now: NOW })
        .preemptions,
    ).toEqual([]);
  });
});

describe('preemption (fair share)', () => {
  // Given running tasks of alice and bob at one priority, and a head that cannot start.
  const running = (taskId: string, owner: string, startedMin: number, over: Partial<DeviceHolder> = {}): DeviceHolder => ({
    ...held(taskId, 300),
    owner,
    priority: 0,
    startedAt: NOW - (60 - startedMin) * MIN,
    preemptible: true,
    stopping: false,
    ...over,
  });
  const schedule = (devices: DeviceView[], queue: QueuedTaskView[], preemption: SchedulingInput['preemption'] = 'fair-share') =>
    backfillPolicy.schedule({ devices, queue, now: NOW, preemption });

  it('a user holding nothing preempts the most recently started task of a user over their share, and the stop records why', () => {
    const devices = [gpu(0, 80, [running('a-old', 'alice', 0)]), gpu(1, 80, [running('a-new', 'alice', 30)])];
    const d = schedule(devices, [task('a3', { owner: 'alice' }), task('b1', { owner: 'bob' })]);
    expect(d.assignments).toEqual([]);
    expect(d.preemptions.map((p) => [p.taskId, p.forTaskId])).toEqual([['a-new', 'b1']]);
    expect(d.preemptions[0]!.message).toMatch(
      /^preempted for task b1 by fair share: bob holds 0 of 2 devices \(fair share 1\), alice holds 2/,
    );
    expect(d.preemptions[0]!.grounds).toEqual({
      rule: 'fair-share',
      head: { taskId: 'b1', owner: 'bob', priority: 0, gpus: 1 },
      victim: { taskId: 'a-new', owner: 'alice', priority: 0, startedAt: NOW - 30 * MIN, gpus: 1 },
      pool: 2,
      users: [
        { user: 'alice', weight: 1, held: 2, fairShare: 1, standing: 7200 },
        { user: 'bob', weight: 1, held: 0, fairShare: 1, standing: 0 },
      ],
      victims: ['a-new'],
    });
  });
  it('never takes a user below their share: at one device each, nobody is preempted (no ping-pong)', () => {
    const devices = [gpu(0, 80, [running('a1', 'alice', 0)]), gpu(1, 80, [running('b1', 'bob', 10)])];
    expect(schedule(devices, [task('b2', { owner: 'bob' }), task('a2', { owner: 'alice' })]).preemptions).toEqual([]);
  });
  it('on one device two users of equal weight have half a device each: nobody is preempted by fair share', () => {
    const d = schedule([gpu(0, 80, [running('a1', 'alice', 0)])], [task('b1', { owner: 'bob' })]);
    expect(d.preemptions).toEqual([]);
  });
  it('weights: with bob of weight 3 on four devices his share is 3, so he may take a third from alice, not a fourth', () => {
    const accounts = new Map<string, Account>([
      ['bob', { maxGpus: null, gpuHoursCap: null, gpuHoursUsed: 0, usageGpuSeconds: 0, weight: 3 }],
    ]);
    const devices = [0, 1, 2].map((i) => gpu(i, 80, [running(`a${i}`, 'alice', i * 10)])).concat(gpu(3, 80, [running('b1', 'bob', 0)]));
    const third = backfillPolicy.schedule({ devices, queue: [task('b2', { owner: 'bob' })], now: NOW, preemption: 'fair-share', accounts });
    expect(third.preemptions.map((p) => p.taskId)).toEqual(['a2']);
    const devices2 = [gpu(0, 80, [running('a0', 'alice', 0)]), ...[1, 2, 3].map((i) => gpu(i, 80, [running(`b${i}`, 'bob', 0)]))];
    const fourth = backfillPolicy.schedule({
      devices: devices2,
      queue: [task('b4', { owner: 'bob' })],
      now: NOW,
      preemption: 'fair-share',
      accounts,
    });
    expect(fourth.preemptions).toEqual([]);
  });
  it('never more than needed: a 2-device head of bob takes two of alice’s four, one when a device is free, none past his share', () => {
    const devices = [0, 1, 2, 3].map((i) => gpu(i, 80, [running(`a${i}`, 'alice', i * 10)]));
    // Four devices, two users: a share of 2 each. Bob's 2-device head takes the two newest of alice's four.
    const d = schedule(devices, [task('b1', { owner: 'bob', gpus: 2 })]);
    expect(d.preemptions.map((p) => p.taskId)).toEqual(['a3', 'a2']);
    expect(d.preemptions[0]!.grounds.victims).toEqual(['a3', 'a2']);
    // Three of alice's and a free device: one victim is enough.
    const three = [0, 1, 2].map((i) => gpu(i, 80, [running(`a${i}`, 'alice', i * 10)])).concat(gpu(3));
    expect(schedule(three, [task('b1', { owner: 'bob', gpus: 2 })]).preemptions.map((p) => p.taskId)).toEqual(['a2']);
    // Three devices (a share of 1.5 each): bob's 2-device head would put him over his: nobody is preempted.
    const pool3 = [0, 1, 2].map((i) => gpu(i, 80, [running(`a${i}`, 'alice', i * 10)]));
    expect(schedule(pool3, [task('b1', { owner: 'bob', gpus: 2 })]).preemptions).toEqual([]);
  });
  it('lower priority goes first: a low task of bob himself before a normal one of alice', () => {
    const devices = [gpu(0, 80, [running('a1', 'alice', 50)]), gpu(1, 80, [running('b-low', 'bob', 0, { priority: -10 })])];
    const d = schedule(devices, [task('b2', { owner: 'bob' })]);
    expect(d.preemptions.map((p) => [p.taskId, p.grounds.rule])).toEqual([['b-low', 'priority']]);
  });
  it('spares tasks preempted too often and waits for tasks already stopping', () => {
    const spared = [
      gpu(0, 80, [running('a1', 'alice', 0, { preemptible: false })]),
      gpu(1, 80, [running('a2', 'alice', 10, { preemptible: false })]),
    ];
    expect(schedule(spared, [task('b1', { owner: 'bob' })]).preemptions).toEqual([]);
    const stopping = [gpu(0, 80, [running('a1', 'alice', 0, { stopping: true })]), gpu(1, 80, [running('a2', 'alice', 10)])];
    expect(schedule(stopping, [task('b1', { owner: 'bob' })]).preemptions).toEqual([]);
  });
  it('only with fair-share: priority mode and no mode leave equal priorities alone', () => {
    const devices = [gpu(0, 80, [running('a1', 'alice', 0)]), gpu(1, 80, [running('a2', 'alice', 30)])];
    expect(schedule(devices, [task('b1', { owner: 'bob' })], 'priority').preemptions).toEqual([]);
    expect(schedule(devices, [task('b1', { owner: 'bob' })], true).preemptions).toEqual([]);
    expect(backfillPolicy.schedule({ devices, queue: [task('b1', { owner: 'bob' })], now: NOW }).preemptions).toEqual([]);
  });
});

describe('fifoOrder', () => {
  const q = (taskId: string, queuedPosition: string | null) => ({ taskId, queuedPosition });
  it('orders by queue position (as big integers), tasks not yet queued last in the given order', () => {
    expect(fifoOrder([q('c', null), q('b', '10'), q('a', '9'), q('d', null)]).map((t) => t.taskId)).toEqual(['a', 'b', 'c', 'd']);
  });
});
