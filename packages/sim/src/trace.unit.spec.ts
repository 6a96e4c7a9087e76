// Reading a job trace and sizing a pool for an offered load (the traces' README rule).
import { describe, expect, it } from 'vitest';
import { offeredLoad, parseTrace, poolForLoad, TraceFormatError } from './trace';

const CSV = 'job_id,submission_time,duration,num_gpu\nj1,0,100,1\nj2,10,50,4\n\nj3,100,10,2\n';

describe('parseTrace', () => {
  it('reads each job in seconds as milliseconds, with a timeout of twice its duration by default', () => {
    expect(parseTrace(CSV)).toEqual([
      { id: 'j1', submitMs: 0, durationMs: 100_000, timeoutMs: 200_000, request: { gpus: 1, memoryMb: null, shared: false } },
      { id: 'j2', submitMs: 10_000, durationMs: 50_000, timeoutMs: 100_000, request: { gpus: 4, memoryMb: null, shared: false } },
      { id: 'j3', submitMs: 100_000, durationMs: 10_000, timeoutMs: 20_000, request: { gpus: 2, memoryMb: null, shared: false } },
    ]);
    expect(parseTrace(CSV, { timeoutFactor: 1.5 })[0]!.timeoutMs).toBe(150_000);
  });
  it('names the line and the column of a bad value', () => {
    expect(() => parseTrace('job_id,submission_time,duration,num_gpu\nj1,0,100,1\nj2,5,-3,1\n')).toThrow(
      new TraceFormatError('trace: line 3: duration: expected seconds ≥ 0, got "-3"'),
    );
    expect(() => parseTrace('job_id,submission_time,duration,num_gpu\nj1,0,100,1.5\n')).toThrow(
      /line 2: num_gpu: expected a whole number ≥ 1/,
    );
    expect(() => parseTrace('job_id,submission_time,duration,num_gpu\nj1,x,100,1\n')).toThrow(/line 2: submission_time/);
  });
  it('wants the header and four columns on every line', () => {
    expect(() => parseTrace('id,submit,duration,gpus\nj1,0,1,1\n')).toThrow(
      /line 1: expected the header job_id,submission_time,duration,num_gpu/,
    );
    expect(() => parseTrace('job_id,submission_time,duration,num_gpu\nj1,0,1\n')).toThrow(TraceFormatError);
    expect(() => parseTrace('')).toThrow(TraceFormatError);
  });
  it('refuses a timeout factor below 1 (a job told less than it runs)', () => {
    expect(() => parseTrace(CSV, { timeoutFactor: 0.5 })).toThrow(/timeoutFactor/);
  });
});

describe('pool size for an offered load', () => {
  // 100×1 + 50×4 + 10×2 = 320 GPU-seconds over a span of 100 s (first to last submission).
  const jobs = parseTrace(CSV);
  it('N = GPU-seconds / (span × ρ), rounded to the nearest whole number', () => {
    expect(poolForLoad(jobs, 1)).toBe(3); // 3.2
    expect(poolForLoad(jobs, 0.9)).toBe(4); // 3.56
    expect(poolForLoad(jobs, 0.5)).toBe(6); // 6.4
    expect(poolForLoad(jobs, 100)).toBe(1);
    expect(offeredLoad(jobs, 4)).toBeCloseTo(0.8, 10);
  });
  it('cannot size from one instant, nor from a load that is not positive', () => {
    expect(() => poolForLoad(parseTrace('job_id,submission_time,duration,num_gpu\nj1,5,10,1\n'), 0.9)).toThrow(/one instant/);
    expect(() => poolForLoad(jobs, 0)).toThrow(/load/);
  });
});
