// Shared pieces of the benchmark harness: where things are, the database, statistics, tables
// and the JSON results every benchmark writes.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import postgres from 'postgres';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const DATASET = join(REPO_ROOT, 'examples/tiny-dataset.jsonl');
const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';

export function benchDatabaseUrl(): string {
  return process.env.BENCH_DATABASE_URL || DEFAULT_DATABASE_URL;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Epoch milliseconds with sub-millisecond precision (comparable across processes). */
export const epochNow = () => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------------------------------------
// Schemas: each benchmark runs in fresh ones, dropped afterwards (also on Ctrl-C).

export function freshSchemaName(what: string): string {
  return `bench_${what.replace(/[^a-z0-9_]/g, '_').slice(0, 20)}_${randomBytes(4).toString('hex')}`;
}

export function adminSql(url: string, schema?: string) {
  return postgres(url, {
    max: 1,
    onnotice: () => {},
    connect_timeout: 10,
    ...(schema ? { connection: { search_path: schema } } : {}),
  });
}

export async function dropSchema(url: string, schema: string): Promise<void> {
  const sql = adminSql(url);
  try {
    await sql.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await sql.end({ timeout: 2 });
  }
}

/** Remove a folder; a failure is reported, never thrown (cleanups must go on). */
export function removeDir(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  } catch (err) {
    console.error(`[bench] could not remove ${dir}: ${(err as Error).message}`);
  }
}

/** Things to undo however the run ends: servers to stop, schemas to drop, folders to remove. */
const cleanups = new Map<number, () => Promise<void> | void>();
let nextCleanup = 1;

export function onCleanup(fn: () => Promise<void> | void): () => Promise<void> {
  const id = nextCleanup++;
  cleanups.set(id, fn);
  return async () => {
    if (!cleanups.delete(id)) return;
    await fn();
  };
}

export async function runAllCleanups(): Promise<void> {
  const fns = [...cleanups.values()].reverse();
  cleanups.clear();
  for (const fn of fns) {
    try {
      await fn();
    } catch (err) {
      console.error(`[bench] cleanup failed: ${(err as Error).message}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Statistics

export interface Summary {
  n: number;
  mean: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Percentile by linear interpolation between closest ranks (p in 0..100). */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  if (sorted.length === 1) return sorted[0]!;
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

export function summarize(samples: readonly number[]): Summary {
  const s = [...samples].sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return {
    n: s.length,
    mean: r(s.reduce((a, b) => a + b, 0) / (s.length || 1)),
    min: r(s[0] ?? NaN),
    p50: r(percentile(s, 50)),
    p90: r(percentile(s, 90)),
    p99: r(percentile(s, 99)),
    max: r(s[s.length - 1] ?? NaN),
  };
}

export const round = (x: number, digits = 1) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

/** A ratio rounded to 2 decimals, or null when the denominator is missing or zero. */
export const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
  a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? null : round(a / b, 2);

// ---------------------------------------------------------------------------------------------
// Output

export type Cell = string | number | null | undefined | boolean;

export function printTable(title: string, headers: string[], rows: Cell[][]): void {
  const text = (c: Cell) => (c === null || c === undefined ? '-' : typeof c === 'number' ? fmtNum(c) : String(c));
  const cells = rows.map((r) => r.map(text));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const numeric = headers.map((_, i) => rows.every((r) => r[i] === null || r[i] === undefined || typeof r[i] === 'number'));
  const line = (r: string[]) =>
    r
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  console.log(`\n${title}`);
  console.log(line(headers));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells) console.log(line(r));
}

function fmtNum(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Number.isInteger(x)) return String(x);
  return Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2);
}

export interface Target {
  name: string;
  /** The target in words, e.g. "≥ 1.0". */
  target: string;
  value: number | null;
  met: boolean | null;
}

export function target(name: string, text: string, value: number | null, ok: (v: number) => boolean): Target {
  return { name, target: text, value, met: value === null ? null : ok(value) };
}

export function printTargets(targets: Target[]): void {
  if (!targets.length) return;
  printTable(
    'targets',
    ['target', 'wanted', 'value', 'met'],
    targets.map((t) => [t.name, t.target, t.value, t.met === null ? 'n/a' : t.met ? 'yes' : 'NO']),
  );
}

export interface MachineInfo {
  nproc: number;
  cpu: string;
  memoryGiB: number;
  node: string;
  platform: string;
  postgres: string | null;
  loadavg: number[];
}

export async function machineInfo(url: string | null): Promise<MachineInfo> {
  let pg: string | null = null;
  if (url) {
    const sql = adminSql(url);
    try {
      const [row] = await sql<{ v: string }[]>`SELECT current_setting('server_version') AS v`;
      pg = row?.v ?? null;
    } catch {
      pg = null;
    } finally {
      await sql.end({ timeout: 2 });
    }
  }
  return {
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    postgres: pg,
    loadavg: loadavg().map((x) => round(x, 2)),
  };
}

export interface BenchResult {
  name: string;
  /** Bumped when the shape changes. */
  schemaVersion: 1;
  quick: boolean;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  machine: MachineInfo & { loadavgAtEnd: number[] };
  params: Record<string, unknown>;
  /** One object per measured configuration; every row has `system` and `backend`. */
  rows: Record<string, unknown>[];
  ratios: Record<string, number | null>;
  targets: Target[];
  notes: string[];
  /** Anything else a benchmark reports (e.g. the stages of the idle gap). */
  details?: Record<string, unknown>;
}

export function writeResult(outDir: string, result: BenchResult): string {
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `${result.name}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}

/** CPU time (user + system) a live process has used so far, in ms (10 ms resolution); NaN when gone. */
export function processCpuMs(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text
      .slice(text.lastIndexOf(')') + 1)
      .trim()
      .split(/\s+/);
    // Fields 14 and 15 (utime, stime), in clock ticks of 1/100 s on Linux.
    return (Number(f[14 - 3]) + Number(f[15 - 3])) * 10;
  } catch {
    return NaN;
  }
}

/** VmRSS and VmHWM (peak) of a live process, in MiB; null when it is gone. */
export function processMemory(pid: number): { rssMiB: number; peakMiB: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
    const rss = kb('VmRSS');
    const peak = kb('VmHWM');
    // A process that is exiting (or a zombie) no longer reports its memory.
    if (Number.isNaN(rss) || Number.isNaN(peak)) return null;
    return { rssMiB: round(rss / 1024, 1), peakMiB: round(peak / 1024, 1) };
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// What run.ts hands each benchmark, and what a benchmark gives back.

export interface BenchContext {
  quick: boolean;
  /** Postgres URL (BENCH_DATABASE_URL or the test database). */
  url: string;
  /** Restart cost: event-log sizes to measure (--sizes). */
  sizes: number[] | null;
  /** Leave out the PGlite half (--skip-pglite). */
  skipPglite: boolean;
  /** Override of the main count of a benchmark (--n). */
  n: number | null;
  log(message: string): void;
}

export type BenchOutput = Pick<BenchResult, 'params' | 'rows' | 'ratios' | 'targets' | 'notes' | 'details'>;

export interface Benchmark {
  name: string;
  description: string;
  /** False for one that runs in the bench process alone: no Postgres needed when only such run. */
  needsDatabase?: boolean;
  run(ctx: BenchContext): Promise<BenchOutput>;
}

/**
 * Run `total` operations with `concurrency` workers pulling from one counter; each worker
 * passes its index (e.g. to use its own client). Returns the wall time and each latency (ms).
 */
export async function drive(
  total: number,
  concurrency: number,
  op: (i: number, worker: number) => Promise<unknown>,
): Promise<{ ms: number; latencies: number[] }> {
  let next = 0;
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      for (;;) {
        const i = next++;
        if (i >= total) return;
        const s = performance.now();
        await op(i, worker);
        latencies.push(performance.now() - s);
      }
    }),
  );
  return { ms: performance.now() - t0, latencies };
}
