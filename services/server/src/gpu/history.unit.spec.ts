// The GPU history: samples of the last hour per GPU (close ones merged), and each task's peak
// memory from its trainer's processes on all its devices.
import { describe, expect, it } from 'vitest';
import { GpuHistory } from './history';
import type { GpuDevice, GpuInfo } from './types';

const T0 = Date.parse('2026-12-04T12:00:00Z');
const S = 1000;

const device = (id: number, usedGb: number, util: number | null, processes: GpuDevice['processes'] = []): GpuDevice => ({
  id,
  uuid: `GPU-${id}`,
  name: 'A100',
  memoryGb: 80,
  memoryUsedGb: usedGb,
  utilization: util,
  processes,
  externalMemoryGb: 0,
  memoryMb: 80 * 1024,
  externalMemoryMb: 0,
  migMode: false,
  instances: [],
});
const info = (devices: GpuDevice[], available = true): GpuInfo => ({
  available,
  count: devices.length,
  devices,
  recommendation: '',
  probedAt: new Date(T0).toISOString(),
});
const proc = (pid: number, gb: number) => ({ pid, name: 'python3', memoryUsedGb: gb, ours: true });

describe('GpuHistory', () => {
  it('keeps each GPU’s samples of the last hour, one every few seconds and the newest', () => {
    const h = new GpuHistory();
    h.record(info([device(1, 10, 50), device(0, 5, null)]), new Map(), T0);
    h.record(info([device(1, 10.5, 55), device(0, 5, null)]), new Map(), T0 + 1 * S);
    h.record(info([device(1, 11, 60), device(0, 5, null)]), new Map(), T0 + 2 * S);
    h.record(info([device(1, 12, 70), device(0, 6, 10)]), new Map(), T0 + 10 * S);
    const [g0, g1] = h.devices(T0 + 10 * S);
    expect(g0!.index).toBe(0);
    expect(g1!.samples).toEqual([
      { at: T0, memoryUsedGb: 10, utilization: 50 },
      { at: T0 + 2 * S, memoryUsedGb: 11, utilization: 60 },
      { at: T0 + 10 * S, memoryUsedGb: 12, utilization: 70 },
    ]);
    // An hour later the old samples are gone; a GPU with none left is not listed.
    h.record(info([device(1, 1, 0)]), new Map(), T0 + 3600 * S + 20 * S);
    expect(h.devices(T0 + 3600 * S + 20 * S).map((s) => [s.index, s.samples.length])).toEqual([[1, 1]]);
  });

  it('keeps nothing from a probe that found no GPU', () => {
    const h = new GpuHistory();
    h.record(info([], false), new Map(), T0);
    expect(h.devices(T0)).toEqual([]);
  });

  it('keeps the most memory a task’s processes were seen holding, summed over its devices', () => {
    const h = new GpuHistory();
    const pids = new Map([
      [100, 'gang'],
      [200, 'solo'],
    ]);
    h.record(info([device(0, 30, 90, [proc(100, 20), proc(999, 5)]), device(1, 20, 90, [proc(100, 18)])]), pids, T0);
    h.record(info([device(0, 10, 90, [proc(100, 4)]), device(1, 10, 90, [proc(200, 7.25)])]), pids, T0 + 10 * S);
    expect(h.peakOf('gang')).toBe(38);
    expect(h.peakOf('solo')).toBe(7.3);
    expect(h.peakOf('never-seen')).toBeNull();
  });
});
