// What-if replay, given/when/then on tiny hand-made traces: given these jobs and a pool of N
// GPUs, when the real policy is replayed in virtual time, then these jobs start then, with these
// metrics. And the replay's own guarantees on a random trace: every job runs exactly once, never
// before it arrives, never more GPUs busy than the pool.
import { describe, expect, it } from 'vitest';
import { backfillPolicy, fifoPolicy, type SchedulingPolicy } from '@trainyard/domain';
import { Prng } from './prng';
import { percentile, replay, ReplayError, type ReplayJob, type ReplayResult } from './replay';

const S = 1000;
const job = (id: string, submitS: number, gpus: number, durationS: number, timeoutS = 2 * durationS): ReplayJob => ({
  id,
  submitMs: submitS * S,
  durationMs: durationS * S,
  timeoutMs: timeoutS * S,
  request: { gpus, memoryMb: null, shared: false },
});
const starts = (r: ReplayResult) => Object.fromEntries(r.runs.map((x) => [x.id, x.startMs / S]));

describe('replay: given a tiny trace, when replayed, then', () => {
  // 4 GPUs. `a` (2 GPUs) runs 0–100 s with a timeout of 200 s; `big` needs all 4; `small` needs 1
  // for 50 s with a timeout of 100 s, so by its timeout it ends (at 102) before big's reserved
  // start (200, a's deadline): backfill starts it at once, FIFO keeps it behind big.
  const trace = [job('a', 0, 2, 100), job('big', 1, 4, 100), job('small', 2, 1, 50)];

  it('backfill wins: a short job starts beside a blocked head without delaying it', () => {
    const fifo = replay(trace, fifoPolicy, { gpus: 4 });
    const backfill = replay(trace, backfillPolicy, { gpus: 4 });
    expect(starts(fifo)).toEqual({ a: 0, big: 100, small: 200 });
    expect(starts(backfill)).toEqual({ a: 0, small: 2, big: 100 });
    expect(backfill.runs.find((r) => r.id === 'small')!.backfilled).toBe(true);
    expect(backfill.backfilled).toBe(1);
    // Busy GPU-seconds 2×100 + 4×100 + 1×50 = 650 either way; the makespan is what differs.
    expect(fifo.metrics).toEqual({
      utilisation: 650 / (4 * 250),
      waitMeanS: (0 + 99 + 198) / 3,
      waitP50S: 99,
      waitP99S: 99 + 0.98 * 99,
      waitMaxS: 198,
      makespanS: 250,
      busyGpuSeconds: 650,
    });
    expect(backfill.metrics).toMatchObject({ utilisation: 650 / (4 * 200), waitMeanS: 33, waitMaxS: 99, makespanS: 200 });
  });

  it('the policy sees the timeout, never the duration: a job whose timeout outlives the reservation is not backfilled', () => {
    // Same as above, but small is told 250 s: it could delay big (reserved from 200 s).
    const r = replay([trace[0]!, trace[1]!, job('small', 2, 1, 50, 250)], backfillPolicy, { gpus: 4 });
    expect(starts(r)).toEqual({ a: 0, big: 100, small: 200 });
    expect(r.backfilled).toBe(0);
  });

  it('the head starts as soon as the running jobs really end, not at their deadlines', () => {
    const r = replay([job('a', 0, 4, 10, 1000), job('b', 0, 4, 10, 1000)], backfillPolicy, { gpus: 4 });
    expect(starts(r)).toEqual({ a: 0, b: 10 });
  });

  it('both policies are equal when there is nothing to backfill (one GPU per job)', () => {
    const ones = [job('a', 0, 1, 30), job('b', 0, 1, 10), job('c', 5, 1, 10), job('d', 6, 1, 5), job('e', 40, 1, 1)];
    const fifo = replay(ones, fifoPolicy, { gpus: 2 });
    const backfill = replay(ones, backfillPolicy, { gpus: 2 });
    expect(starts(fifo)).toEqual({ a: 0, b: 0, c: 10, d: 20, e: 40 });
    expect(backfill.runs).toEqual(fifo.runs);
    expect(backfill.metrics).toEqual(fifo.metrics);
  });

  it('a job larger than the pool is left out and counted; the rest run', () => {
    const r = replay([job('a', 0, 1, 10), job('huge', 0, 8, 10), job('b', 1, 2, 10)], backfillPolicy, { gpus: 4 });
    expect(r.skipped.map((j) => j.id)).toEqual(['huge']);
    expect(r.jobs).toBe(2);
    expect(starts(r)).toEqual({ a: 0, b: 1 });
  });

  it('a job of no duration starts and ends at once, and the queue moves on at the same instant', () => {
    const r = replay([job('a', 0, 1, 0), job('b', 0, 1, 5)], fifoPolicy, { gpus: 1 });
    expect(r.runs.map((x) => [x.id, x.startMs / S, x.endMs / S])).toEqual([
      ['a', 0, 0],
      ['b', 0, 5],
    ]);
  });

  it('an empty trace gives zeros', () => {
    expect(replay([], fifoPolicy, { gpus: 2 }).metrics).toMatchObject({ utilisation: 0, makespanS: 0, waitMaxS: 0 });
  });
});

describe('replay: conservation on a random trace (both policies)', () => {
  const rnd = new Prng(20261204);
  const GPUS = 8;
  const trace: ReplayJob[] = Array.from({ length: 400 }, (_, i) =>
    job(`j${i}`, rnd.int(0, 4000), rnd.pick([1, 1, 1, 2, 4, 8])!, rnd.int(0, 300), rnd.int(300, 900)),
  );

  for (const policy of [fifoPolicy, backfillPolicy]) {
    it(`${policy.name}: every job runs exactly once, none before it arrives, never more GPUs busy than the pool`, () => {
      const r = replay(trace, policy, { gpus: GPUS });
      expect(r.runs.map((x) => x.id).sort()).toEqual(trace.map((j) => j.id).sort());
      const byId = new Map(trace.map((j) => [j.id, j]));
      for (const x of r.runs) {
        const j = byId.get(x.id)!;
        expect(x.startMs).toBeGreaterThanOrEqual(j.submitMs);
        expect(x.endMs - x.startMs).toBe(j.durationMs);
        expect(x.deviceIds).toHaveLength(j.request.gpus);
      }
      // Sweep: +gpus at each start, -gpus at each end (ends first at one instant).
      const edges = r.runs.flatMap((x) => [
        { at: x.startMs, d: x.deviceIds.length },
        { at: x.endMs, d: -x.deviceIds.length },
      ]);
      edges.sort((a, b) => a.at - b.at || a.d - b.d);
      let busy = 0;
      for (const e of edges) {
        busy += e.d;
        expect(busy).toBeLessThanOrEqual(GPUS);
      }
      // No device holds two jobs at once.
      const perDevice = new Map<string, [number, number][]>();
      for (const x of r.runs) for (const d of x.deviceIds) perDevice.set(d, [...(perDevice.get(d) ?? []), [x.startMs, x.endMs]]);
      for (const spans of perDevice.values()) {
        spans.sort((a, b) => a[0] - b[0]);
        for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]);
      }
      expect(r.metrics.busyGpuSeconds).toBeCloseTo(
        trace.reduce((n, j) => n + (j.durationMs / S) * j.request.gpus, 0),
        6,
      );
      expect(r.metrics.utilisation).toBeGreaterThan(0);
      expect(r.metrics.utilisation).toBeLessThanOrEqual(1);
    });
  }

  it('fifo starts jobs in arrival order; backfill starts some out of order and waits less on average', () => {
    const fifo = replay(trace, fifoPolicy, { gpus: GPUS });
    const arrival = [...trace].map((j, i) => ({ j, i })).sort((a, b) => a.j.submitMs - b.j.submitMs || a.i - b.i);
    const startOf = new Map(fifo.runs.map((x) => [x.id, x.startMs]));
    const startsInArrivalOrder = arrival.map(({ j }) => startOf.get(j.id)!);
    expect(startsInArrivalOrder).toEqual([...startsInArrivalOrder].sort((a, b) => a - b));
    const backfill = replay(trace, backfillPolicy, { gpus: GPUS });
    expect(backfill.backfilled).toBeGreaterThan(0);
    expect(backfill.metrics.waitMeanS).toBeLessThan(fifo.metrics.waitMeanS);
  });
});

describe('replay: a policy that breaks the model fails the replay', () => {
  it('a policy that puts every queued job on gpu0 is caught double-booking', () => {
    const greedy: SchedulingPolicy = {
      name: 'greedy',
      schedule: (input) => {
        const d = fifoPolicy.schedule({ ...input, devices: input.devices.map((x) => ({ ...x, holders: [] })) });
        return { ...d, assignments: d.assignments.map((a) => ({ ...a, devices: a.devices.map((g) => ({ ...g, deviceId: 'gpu0' })) })) };
      },
    };
    expect(() => replay([job('a', 0, 1, 10), job('b', 1, 1, 10)], greedy, { gpus: 2 })).toThrow(ReplayError);
    expect(() => replay([job('a', 0, 1, 10), job('b', 1, 1, 10)], greedy, { gpus: 2 })).toThrow(/placed b on gpu0, held by a/);
  });
  it('a policy that starts nothing with an idle pool is caught stalling', () => {
    const idle: SchedulingPolicy = {
      name: 'idle',
      schedule: () => ({ assignments: [], waiting: new Map(), reservation: null, preemptions: [] }),
    };
    expect(() => replay([job('a', 0, 1, 10)], idle, { gpus: 1 })).toThrow(/stalled/);
  });
});

describe('percentile', () => {
  it('interpolates between the closest ranks', () => {
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    expect(percentile([5], 99)).toBe(5);
    expect(percentile([0, 10], 99)).toBeCloseTo(9.9, 10);
  });
});
