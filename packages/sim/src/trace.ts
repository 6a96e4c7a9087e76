// Job traces for the what-if replay: the CSV of a GPU-cluster trace (job_id, submission_time,
// duration, num_gpu; seconds), turned into jobs that ask for whole GPUs exclusively, with a
// timeout of `timeoutFactor` × their real duration. And the pool size for an offered load, by
// the rule of the traces' README: ρ = Σ(duration × num_gpu) / (span × N), span from the first
// submission to the last, N rounded to the nearest whole number.
import { parse } from 'csv-parse/sync';
import type { ReplayJob } from './replay';

export const TRACE_COLUMNS = ['job_id', 'submission_time', 'duration', 'num_gpu'] as const;
export const DEFAULT_TIMEOUT_FACTOR = 2;

/** A trace that cannot be read; names the line and the column. */
export class TraceFormatError extends Error {
  override name = 'TraceFormatError';
}

export interface TraceOptions {
  /** Each job's timeout as a multiple of its real duration (what the policy is told). */
  timeoutFactor?: number;
}

export function parseTrace(text: string, { timeoutFactor = DEFAULT_TIMEOUT_FACTOR }: TraceOptions = {}): ReplayJob[] {
  if (!(Number.isFinite(timeoutFactor) && timeoutFactor >= 1))
    throw new RangeError(`timeoutFactor: expected a number ≥ 1 (a job may not be told less than it runs), got ${timeoutFactor}`);
  let records: string[][];
  try {
    records = parse(text, { skip_empty_lines: true, trim: true, relax_column_count: false }) as string[][];
  } catch (err) {
    throw new TraceFormatError(`trace: ${(err as Error).message}`);
  }
  const header = records[0];
  if (!header || TRACE_COLUMNS.some((c, i) => header[i] !== c) || header.length !== TRACE_COLUMNS.length)
    throw new TraceFormatError(
      `trace: line 1: expected the header ${TRACE_COLUMNS.join(',')}, got ${header ? header.join(',') : 'nothing'}`,
    );
  return records.slice(1).map((rec, k) => {
    const line = k + 2;
    const num = (col: (typeof TRACE_COLUMNS)[number], ok: (x: number) => boolean, what: string) => {
      const raw = rec[TRACE_COLUMNS.indexOf(col)] ?? '';
      const x = raw === '' ? NaN : Number(raw);
      if (!ok(x)) throw new TraceFormatError(`trace: line ${line}: ${col}: expected ${what}, got ${JSON.stringify(raw)}`);
      return x;
    };
    const id = rec[0]!;
    if (!id) throw new TraceFormatError(`trace: line ${line}: job_id: empty`);
    const submission = num('submission_time', (x) => Number.isFinite(x) && x >= 0, 'seconds ≥ 0');
    const duration = num('duration', (x) => Number.isFinite(x) && x >= 0, 'seconds ≥ 0');
    const gpus = num('num_gpu', (x) => Number.isInteger(x) && x >= 1, 'a whole number ≥ 1');
    return {
      id,
      submitMs: submission * 1000,
      durationMs: duration * 1000,
      timeoutMs: duration * 1000 * timeoutFactor,
      request: { gpus, memoryMb: null, shared: false },
    };
  });
}

/** GPU-seconds the jobs ask for, and the span of their submissions (seconds). */
export function traceDemand(jobs: readonly Pick<ReplayJob, 'submitMs' | 'durationMs' | 'request'>[]): {
  gpuSeconds: number;
  spanS: number;
} {
  let gpuSeconds = 0;
  let first = Infinity;
  let last = -Infinity;
  for (const j of jobs) {
    gpuSeconds += (j.durationMs / 1000) * j.request.gpus;
    first = Math.min(first, j.submitMs);
    last = Math.max(last, j.submitMs);
  }
  return { gpuSeconds, spanS: jobs.length ? (last - first) / 1000 : 0 };
}

/** N for an offered load ρ: Σ(duration × GPUs) / (span × ρ), rounded to the nearest whole number (at least 1). */
export function poolForLoad(jobs: readonly Pick<ReplayJob, 'submitMs' | 'durationMs' | 'request'>[], load: number): number {
  if (!(Number.isFinite(load) && load > 0)) throw new RangeError(`load: expected a number > 0, got ${load}`);
  const { gpuSeconds, spanS } = traceDemand(jobs);
  if (spanS <= 0)
    throw new RangeError('load: the jobs are all submitted at one instant, so an offered load does not size a pool; give the GPUs instead');
  return Math.max(1, Math.round(gpuSeconds / (spanS * load)));
}

/** The offered load of the jobs on N GPUs (ρ as the traces' README defines it). */
export function offeredLoad(jobs: readonly Pick<ReplayJob, 'submitMs' | 'durationMs' | 'request'>[], gpus: number): number {
  const { gpuSeconds, spanS } = traceDemand(jobs);
  return spanS > 0 ? gpuSeconds / (spanS * gpus) : NaN;
}
