// Smoke test of the benchmark harness (not of the figures): runs `npm run bench -- --quick` for
// three benchmarks at tiny sizes against the test Postgres, and the scheduling rows (no database),
// and checks the JSON they write has the expected shape. The benchmarks themselves are not part
// of `npm test` (npm run bench).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';

const REPO_ROOT = resolve(import.meta.dirname, '..');
const postgresUrl = inject('postgresUrl');

function runBench(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolvePromise) => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && !k.startsWith('TRAINYARD_') && k !== 'DATABASE_URL') env[k] = v;
    env.BENCH_DATABASE_URL = postgresUrl!;
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench/run.ts'), ...args], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('close', (code) => resolvePromise({ code, output }));
  });
}

const isNumber = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
const summaryShape = {
  n: expect.any(Number),
  p50: expect.any(Number),
  p99: expect.any(Number),
  mean: expect.any(Number),
  min: expect.any(Number),
  max: expect.any(Number),
  p90: expect.any(Number),
};

function envelope(result: Record<string, unknown>, name: string): void {
  expect(result).toMatchObject({
    name,
    schemaVersion: 1,
    quick: true,
    startedAt: expect.any(String),
    finishedAt: expect.any(String),
    durationMs: expect.any(Number),
    machine: {
      nproc: expect.any(Number),
      memoryGiB: expect.any(Number),
      node: expect.any(String),
      postgres: expect.any(String),
      loadavg: expect.any(Array),
    },
    params: expect.any(Object),
    ratios: expect.any(Object),
    notes: expect.any(Array),
  });
  const rows = result.rows as Record<string, unknown>[];
  expect(rows.length).toBeGreaterThan(0);
  for (const row of rows) expect(row).toMatchObject({ system: expect.any(String), backend: expect.stringMatching(/^(postgres|pglite)$/) });
  for (const t of result.targets as Record<string, unknown>[]) {
    expect(t).toMatchObject({ name: expect.any(String), target: expect.any(String) });
    expect(t.value === null || isNumber(t.value)).toBe(true);
    expect([true, false, null]).toContain(t.met);
  }
}

describe.skipIf(!postgresUrl)('benchmark harness (smoke, --quick)', () => {
  const out = mkdtempSync(join(tmpdir(), 'trainyard-bench-smoke-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('runs submit and restart at tiny sizes and writes results of the documented shape', async () => {
    const { code, output } = await runBench(['--quick', '--only', 'submit,restart', '--skip-pglite', '--sizes', '0,800', '--out', out]);
    expect(code, output.slice(-4000)).toBe(0);

    const submit = JSON.parse(readFileSync(join(out, 'submit.json'), 'utf8'));
    envelope(submit, 'submit');
    for (const system of ['trainyard', 'trainyard store in-process', 'pg-boss send', 'raw INSERT']) {
      expect(submit.rows.filter((r: { system: string }) => r.system === system).map((r: { concurrency: number }) => r.concurrency)).toEqual(
        [1, 16, 64],
      );
    }
    for (const row of submit.rows) {
      expect(row.perSecond).toBeGreaterThan(0);
      expect(row.latencyMs).toMatchObject(summaryShape);
    }
    for (const c of [1, 16, 64]) {
      expect(isNumber(submit.ratios[`trainyard/pg-boss c=${c}`])).toBe(true);
      expect(isNumber(submit.ratios[`trainyard/raw c=${c}`])).toBe(true);
    }
    expect(submit.targets.map((t: { name: string }) => t.name)).toContain('submit trainyard/raw INSERT c=16');

    const restart = JSON.parse(readFileSync(join(out, 'restart.json'), 'utf8'));
    envelope(restart, 'restart');
    expect(restart.rows.map((r: { events: number }) => r.events)).toEqual([0, 800]);
    for (const row of restart.rows) {
      expect(row.firstResponseMs).toBeGreaterThan(0);
      expect(isNumber(row.rssMiB)).toBe(true);
      // The generated history is valid: the rebuild finds the read models equal to the log.
      expect(row.rebuild).toMatchObject({ ok: true, differences: 0, events: row.events });
    }
    expect(restart.targets.length).toBeGreaterThan(0);
  });

  it('runs restart-busy at tiny sizes: the queued history is valid and the running tasks are re-attached', async () => {
    const { code, output } = await runBench(['--quick', '--only', 'restart-busy', '--skip-pglite', '--out', out]);
    expect(code, output.slice(-4000)).toBe(0);
    const result = JSON.parse(readFileSync(join(out, 'restart-busy.json'), 'utf8'));
    envelope(result, 'restart-busy');
    expect(result.rows.map((r: { scenario: string }) => r.scenario)).toEqual(['empty', 'busy']);
    const busy = result.rows[1];
    expect(busy).toMatchObject({ running: 8, queued: 500, stillTraining: 8, rebuild: { ok: true, differences: 0 } });
    for (const row of result.rows) expect(row.firstResponseMs).toBeGreaterThan(0);
    expect(busy.firstQueuedStartMs).toBeGreaterThan(0);
    expect(result.targets.map((t: { name: string }) => t.name)).toContain('start-up flat: postgres start-up busy/empty');
  });

  it('runs the exit transaction against a one-SELECT transaction at a tiny size', async () => {
    const { code, output } = await runBench(['--quick', '--only', 'exit-transaction', '--out', out]);
    expect(code, output.slice(-4000)).toBe(0);
    const result = JSON.parse(readFileSync(join(out, 'exit-transaction.json'), 'utf8'));
    envelope(result, 'exit-transaction');
    expect(result.rows.map((r: { system: string }) => r.system)).toEqual([
      'exit + next assignment, one transaction',
      'a transaction of one SELECT',
    ]);
    for (const row of result.rows) expect(row.latencyMs).toMatchObject({ ...summaryShape, n: 20 });
    expect(result.ratios['exit transaction / one-SELECT transaction (p50)']).toBeGreaterThan(1);
  });

  it('runs the scheduling rows (trace replay and decision time) at tiny sizes, FIFO beside backfill', async () => {
    const { code, output } = await runBench(['--quick', '--only', 'scheduling', '--out', out]);
    expect(code, output.slice(-4000)).toBe(0);
    const result = JSON.parse(readFileSync(join(out, 'scheduling.json'), 'utf8'));
    expect(result).toMatchObject({ name: 'scheduling', schemaVersion: 1, quick: true, machine: { postgres: null } });
    const trace = result.rows.filter((r: { kind: string }) => r.kind === 'trace');
    expect(trace.map((r: { system: string; load: number }) => `${r.system}@${r.load}`)).toEqual(
      ['0.7', '0.9', '1.1'].flatMap((l) => [`fifo@${l}`, `backfill@${l}`]),
    );
    for (const r of trace) {
      expect(r).toMatchObject({ backend: 'virtual time', jobs: 1500, skipped: 0 });
      for (const k of ['gpus', 'utilisation', 'waitMeanS', 'waitP50S', 'waitP99S', 'waitMaxS', 'makespanS'])
        expect(isNumber(r[k])).toBe(true);
    }
    const decision = result.rows.filter((r: { kind: string }) => r.kind === 'decision');
    expect(decision.map((r: { system: string }) => r.system)).toEqual(['fifo', 'backfill']);
    for (const r of decision) expect(r).toMatchObject({ devices: 256, queued: 10000, latencyMs: summaryShape, cpuMs: summaryShape });
    for (const l of ['0.7', '0.9', '1.1']) expect(isNumber(result.ratios[`backfill/fifo wait mean load=${l}`])).toBe(true);
    expect(result.targets.map((t: { name: string }) => t.name)).toEqual([
      'backfill/fifo wait mean at load 0.9',
      'backfill/fifo wait p99 at load 0.9',
      'backfill/fifo utilisation at load 0.9',
      'backfill decision p99 at 10000 queued, 256 devices (ms)',
    ]);
  });

  it("runs the launch's folders made ahead against made at the launch, at a tiny size", async () => {
    const { code, output } = await runBench(['--quick', '--only', 'launch-folders', '--out', out]);
    expect(code, output.slice(-4000)).toBe(0);
    const result = JSON.parse(readFileSync(join(out, 'launch-folders.json'), 'utf8'));
    expect(result).toMatchObject({ name: 'launch-folders', schemaVersion: 1, quick: true, machine: { postgres: null } });
    expect(result.rows.map((r: { system: string }) => r.system)).toEqual([
      'folders made ahead of need (SpareRunFolder)',
      'every folder made at the launch',
    ]);
    for (const r of result.rows) expect(r).toMatchObject({ backend: 'filesystem', n: 10, latencyMs: summaryShape });
    expect(isNumber(result.ratios['made ahead / made at the launch (p50)'])).toBe(true);
  });
});
