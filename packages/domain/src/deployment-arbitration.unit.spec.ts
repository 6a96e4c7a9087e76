import { describe, expect, it } from 'vitest';
import {
  arbitrate,
  memoryReleased,
  placeDeployment,
  reclaimFits,
  uniformInventory,
  type DeploymentView,
  type DeviceHolder,
  type DeviceView,
  type QueuedTaskView,
} from '.';

const GB = 1024;
const NOW = Date.parse('2026-01-01T00:00:00Z');

/** Given devices of 80 GB with these holders (by device index) … */
const devices = (holders: DeviceHolder[][] = [[]], memoryMb = 80 * GB): DeviceView[] =>
  uniformInventory(holders.length, memoryMb).map((d, i) => ({ ...d, externalMemoryMb: 0, blockedReason: null, holders: holders[i] ?? [] }));
const depHolder = (id: string, memoryMb: number): DeviceHolder => ({ taskId: id, memoryMb, exclusive: false, endsBy: null });
const taskHolder = (id: string): DeviceHolder => ({ taskId: id, memoryMb: 80 * GB, exclusive: true, endsBy: NOW + 3_600_000 });
const dep = (over: Partial<DeploymentView> = {}): DeploymentView => ({
  id: 'dep-1',
  model: 'Qwen/Qwen2.5-0.5B-Instruct',
  status: 'SERVING',
  priority: 0,
  onTrainingDemand: 'sleep',
  gpus: 1,
  gpuMemoryUtilization: 0.3,
  launched: true,
  stopping: false,
  holds: [{ deviceId: 'gpu0', gpuIndex: 0, uuid: null, memoryMb: 24_576 }],
  placedOn: ['gpu0'],
  yielding: null,
  ...over,
});
const task = (id: string, priority = 0, over: Partial<QueuedTaskView['request']> = {}): QueuedTaskView => ({
  taskId: id,
  queuedPosition: '1',
  request: { gpus: 1, memoryMb: null, shared: false, ...over },
  timeoutMs: 3_600_000,
  priority,
});
const when = (devs: DeviceView[], queue: QueuedTaskView[], deployments: DeploymentView[]) =>
  arbitrate({ devices: devs, queue, deployments, now: NOW });

describe('placing a deployment', () => {
  it('given a free 80 GB GPU, when a deployment at 0.3 is placed, then it holds 0.3 × 80 GB there', () => {
    expect(placeDeployment(devices(), { gpus: 1, gpuMemoryUtilization: 0.3 })).toEqual({
      holds: [{ deviceId: 'gpu0', gpuIndex: 0, uuid: null, memoryMb: 24_576 }],
    });
  });

  it('given a GPU a training task holds exclusively, when a deployment is placed, then it fits nowhere and says what is free', () => {
    const r = placeDeployment(devices([[taskHolder('t1')]]), { gpus: 1, gpuMemoryUtilization: 0.3 });
    expect(r).toEqual({ reason: expect.stringMatching(/needs 1 GPU with gpuMemoryUtilization 0.3.*free now: GPU 0 0 of 80 GB/) });
  });

  it('given another program holds 60 of 80 GB, when a deployment at 0.3 (24 GB) is placed, then it does not fit', () => {
    const d = devices();
    d[0] = { ...d[0]!, externalMemoryMb: 60 * GB };
    expect(placeDeployment(d, { gpus: 1, gpuMemoryUtilization: 0.3 })).toHaveProperty('reason');
  });

  it('given one deployment at 0.3 on each of two GPUs, when another at 0.85 wants one GPU, then it does not fit; at 0.5 it does', () => {
    const d = devices([[depHolder('dep-a', 24_576)], [depHolder('dep-b', 24_576)]]);
    expect(placeDeployment(d, { gpus: 1, gpuMemoryUtilization: 0.85 })).toHaveProperty('reason');
    expect(placeDeployment(d, { gpus: 1, gpuMemoryUtilization: 0.5 })).toHaveProperty('holds');
  });

  it('given two free GPUs, when a tensor-parallel deployment of 2 is placed, then it holds memory on both', () => {
    const r = placeDeployment(devices([[], []]), { gpus: 2, gpuMemoryUtilization: 0.8 });
    expect('holds' in r && r.holds.map((h) => h.deviceId)).toEqual(['gpu0', 'gpu1']);
  });
});

describe('arbitration between deployments and training', () => {
  it('given a sleep deployment on the only GPU, when a normal task queues, then it is put to sleep for it and the task waits HELD_BY_DEPLOYMENT', () => {
    const a = when(devices([[depHolder('dep-1', 24_576)]]), [task('t1')], [dep()]);
    expect(a.yields).toEqual([{ deploymentId: 'dep-1', yielding: expect.objectContaining({ mode: 'sleep', forTaskId: 't1' }) }]);
    expect(a.held.get('t1')).toMatchObject({
      code: 'HELD_BY_DEPLOYMENT',
      message: expect.stringMatching(/GPU 0 is held by deployment dep-1/),
    });
  });

  it('given a stop deployment, when a task needs its GPU, then it is stopped for it', () => {
    const a = when(devices([[depHolder('dep-1', 24_576)]]), [task('t1')], [dep({ onTrainingDemand: 'stop' })]);
    expect(a.yields[0]?.yielding.mode).toBe('stop');
  });

  it('given a wait deployment, when a task needs its GPU, then nothing yields and the task waits HELD_BY_DEPLOYMENT saying why', () => {
    const a = when(devices([[depHolder('dep-1', 24_576)]]), [task('t1')], [dep({ onTrainingDemand: 'wait' })]);
    expect(a.yields).toEqual([]);
    expect(a.held.get('t1')).toMatchObject({ code: 'HELD_BY_DEPLOYMENT', message: expect.stringMatching(/onTrainingDemand wait/) });
  });

  it('given an urgent deployment, when a normal task needs its GPU, then it is never put to sleep; an urgent task does put it to sleep', () => {
    const d = devices([[depHolder('dep-1', 24_576)]]);
    const normal = when(d, [task('t1', 0)], [dep({ priority: 20 })]);
    expect(normal.yields).toEqual([]);
    expect(normal.held.get('t1')?.message).toMatch(/priority 20, above this task's 0/);
    expect(when(d, [task('t2', 20)], [dep({ priority: 20 })]).yields).toHaveLength(1);
  });

  it('given a shared task that fits beside the deployment, when it queues, then nothing yields (the scheduler places it)', () => {
    const a = when(devices([[depHolder('dep-1', 24_576)]]), [task('t1', 0, { memoryMb: 20 * GB, shared: true })], [dep()]);
    expect(a.yields).toEqual([]);
    expect(a.held.size).toBe(0);
  });

  it('given a task that waits for another task, not the deployment, when arbitrated, then the deployment stays', () => {
    const a = when(
      devices([[taskHolder('t0')], [depHolder('dep-1', 24_576)]]),
      [task('t1', 0, { gpus: 2 })],
      [dep({ placedOn: ['gpu1'], holds: [{ deviceId: 'gpu1', gpuIndex: 1, uuid: null, memoryMb: 24_576 }] })],
    );
    expect(a.yields).toEqual([]);
    expect(a.held.size).toBe(0);
  });

  it('given a deployment still STARTING (its server loading), when a task needs its GPU, then it is not asked to yield yet; the task waits saying so', () => {
    const a = when(devices([[depHolder('dep-1', 24_576)]]), [task('t1')], [dep({ status: 'STARTING', launched: false })]);
    expect(a.yields).toEqual([]);
    expect(a.held.get('t1')?.message).toMatch(/dep-1 .* is starting; it gives way once it serves/);
  });

  it('given a deployment already giving way, when arbitrated again, then it is not asked twice but the task still waits for it', () => {
    const yielding = { mode: 'sleep' as const, forTaskId: 't1', message: '' };
    const a = when(devices([[depHolder('dep-1', 24_576)]]), [task('t1')], [dep({ status: 'SLEEPING', yielding })]);
    expect(a.yields).toEqual([]);
    expect(a.held.get('t1')?.code).toBe('HELD_BY_DEPLOYMENT');
  });

  it('given a deployment asleep with its memory released, when the task it gave way to still queues, then it is not woken', () => {
    const yielding = { mode: 'sleep' as const, forTaskId: 't1', message: '' };
    const a = when(devices([[]]), [task('t1')], [dep({ status: 'SLEEPING', holds: [], yielding })]);
    expect(a.wakes).toEqual([]);
  });

  it('given a deployment asleep and released, when the task it gave way to trains on the GPU, then it is not woken; once it ended, it is', () => {
    const yielding = { mode: 'sleep' as const, forTaskId: 't1', message: '' };
    const asleep = dep({ status: 'SLEEPING', holds: [], yielding });
    expect(when(devices([[taskHolder('t1')]]), [], [asleep]).wakes).toEqual([]);
    expect(when(devices([[]]), [], [asleep]).wakes).toEqual(['dep-1']);
  });

  it('given a deployment stopped for training (STARTING, not placed), when its GPU is free, then it is placed again', () => {
    const yielding = { mode: 'stop' as const, forTaskId: 't1', message: '' };
    const stopped = dep({ status: 'STARTING', launched: false, holds: [], placedOn: [], yielding });
    expect(when(devices([[taskHolder('t1')]]), [], [stopped]).places).toEqual([]);
    expect(when(devices([[]]), [], [stopped]).places).toEqual(['dep-1']);
  });

  it('given a sleeping deployment whose reclaim would not fit (another program took the memory), when arbitrated, then it is not woken', () => {
    const d = devices([[]]);
    d[0] = { ...d[0]!, externalMemoryMb: 70 * GB };
    expect(reclaimFits(d, { id: 'dep-1', gpuMemoryUtilization: 0.3 }, ['gpu0'])).toBe(false);
    expect(when(d, [], [dep({ status: 'SLEEPING', holds: [] })]).wakes).toEqual([]);
  });
});

describe('observing a sleeping deployment’s memory released', () => {
  const holds = [{ deviceId: 'gpu0', gpuIndex: 0, uuid: null, memoryMb: 24_576 }];
  it('given nvidia-smi shows its process still holding 24 GB, then it is not released', () => {
    expect(memoryReleased(holds, new Map([['gpu0', { usedByItMb: 24_576, deviceUsedMb: 24_576, othersMb: 0 }]])).released).toBe(false);
  });
  it('given nvidia-smi shows its process down to a CUDA context, then it is released, saying what was seen', () => {
    const r = memoryReleased(holds, new Map([['gpu0', { usedByItMb: 512, deviceUsedMb: 512, othersMb: 0 }]]));
    expect(r).toEqual({ released: true, observed: expect.stringMatching(/gpu0 0.5 GB \(held 24 GB\)/) });
  });
  it('given no per-process figure (MIG), then the device’s used memory less other processes’ decides', () => {
    expect(memoryReleased(holds, new Map([['gpu0', { usedByItMb: null, deviceUsedMb: 30_000, othersMb: 29_000 }]])).released).toBe(true);
    expect(memoryReleased(holds, new Map([['gpu0', { usedByItMb: null, deviceUsedMb: 30_000, othersMb: 0 }]])).released).toBe(false);
  });
  it('given no reading for the device, then it is not released', () => {
    expect(memoryReleased(holds, new Map()).released).toBe(false);
  });
});
