// `npm run whatif` as a child process: a small trace file, and a recorded log on both databases,
// replayed through both policies; the JSON lines checked figure by figure.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CURRENT_SCHEMA_VERSION, DEFAULT_RESOURCES, type NewTaskEvent, type TaskSpec } from '@trainyard/domain';
import { openDatabase, tables, type Database } from '@trainyard/store';
import { backendAvailable, backends, openTestDatabase, taskSpec } from '@trainyard/store/testing';

const REPO_ROOT = resolve(import.meta.dirname, '../../..');
const CLI = join(REPO_ROOT, 'packages/sim/src/whatif-cli.ts');
const KEYS = ['policy', 'gpus', 'jobs', 'utilisation', 'waitMeanS', 'waitP50S', 'waitP99S', 'waitMaxS', 'makespanS'];

function whatif(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const base: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && !k.startsWith('TRAINYARD_') && k !== 'DATABASE_URL') base[k] = v;
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
      cwd: REPO_ROOT,
      env: { ...base, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('close', (code) => done({ code, stdout, stderr }));
  });
}
const jsonLines = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

const dir = mkdtempSync(join(tmpdir(), 'trainyard-whatif-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// 4 GPUs: a (2 GPUs, 100 s), then big (all 4) and small (1 GPU, 50 s, timeout 100 s), which
// backfill starts beside the blocked big one; plus huge (8 GPUs), which never fits 4.
const TRACE = join(dir, 'tiny.csv');
writeFileSync(TRACE, 'job_id,submission_time,duration,num_gpu\na,0,100,2\nbig,1,100,4\nsmall,2,50,1\nhuge,3,10,8\n');

describe('npm run whatif -- --trace', () => {
  it('--json prints one line per policy with exactly the documented fields', async () => {
    const { code, stdout, stderr } = await whatif(['--trace', TRACE, '--gpus', '4', '--policy', 'fifo,backfill', '--json']);
    expect(code, stderr).toBe(0);
    const lines = jsonLines(stdout);
    for (const l of lines) expect(Object.keys(l)).toEqual(KEYS);
    expect(lines).toEqual([
      { policy: 'fifo', gpus: 4, jobs: 3, utilisation: 0.65, waitMeanS: 99, waitP50S: 99, waitP99S: 196.02, waitMaxS: 198, makespanS: 250 },
      {
        policy: 'backfill',
        gpus: 4,
        jobs: 3,
        utilisation: 0.8125,
        waitMeanS: 33,
        waitP50S: 0,
        waitP99S: 97.02,
        waitMaxS: 99,
        makespanS: 200,
      },
    ]);
    expect(stderr).toMatch(/1 job\(s\) can never fit 4 GPUs/);
  });

  it('--load sizes the pool (N = GPU-seconds / (span × ρ), rounded) and --timeout-factor is what the policy sees', async () => {
    // 2×100 + 4×100 + 1×50 + 8×10 = 730 GPU-seconds over 3 s: ρ = 30 gives N = 8, so huge fits.
    const sized = await whatif(['--trace', TRACE, '--load', '30', '--policy', 'backfill', '--json']);
    expect(sized.code, sized.stderr).toBe(0);
    expect(jsonLines(sized.stdout)).toMatchObject([{ policy: 'backfill', gpus: 8, jobs: 4 }]);
    // late (1 GPU, 60 s, at 50 s) may start beside the blocked big one only if its timeout ends
    // it before big's reservation (a's deadline): 50 + 60k ≤ 100k holds for k = 2, not for k = 1.
    const late = join(dir, 'late.csv');
    writeFileSync(late, 'job_id,submission_time,duration,num_gpu\na,0,100,2\nbig,1,100,4\nlate,50,60,1\n');
    const byFactor = async (k: string) =>
      jsonLines((await whatif(['--trace', late, '--gpus', '4', '--timeout-factor', k, '--policy', 'backfill', '--json'])).stdout);
    // k = 1: as FIFO (waits 0, 99, 150); k = 2: late starts at once, big waits for it (0, 109, 0).
    expect(await byFactor('1')).toMatchObject([{ waitMeanS: 83, makespanS: 260 }]);
    expect(await byFactor('2')).toMatchObject([{ waitMeanS: 36.333, makespanS: 210 }]);
  });

  it('prints a table with the policies side by side', async () => {
    const { code, stdout } = await whatif(['--trace', TRACE, '--gpus', '4']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^what-if replay of tiny\.csv: 3 jobs on 4 GPUs/);
    expect(stdout).toMatch(/^\s+fifo\s+backfill$/m);
    expect(stdout).toMatch(/^GPU utilisation\s+65\.0 %\s+81\.3 %$/m);
    expect(stdout).toMatch(/^queue wait mean\s+1\.7 min\s+33 s$/m);
    expect(stdout).toMatch(/^started by backfill\s+0\s+1$/m);
  });

  it('bad input exits 2 with a message naming the flag or the line', async () => {
    const bad = join(dir, 'bad.csv');
    writeFileSync(bad, 'job_id,submission_time,duration,num_gpu\na,0,100,0\n');
    const cases: [string[], RegExp][] = [
      [['--trace', TRACE, '--policy', 'lifo'], /--policy <names>' argument 'lifo' is invalid/],
      [['--trace', TRACE, '--gpus', '2', '--load', '0.9'], /--gpus <n>' cannot be used with option '--load/],
      [['--gpus', '2'], /give one source: --trace FILE or --from-log/],
      [['--trace', join(dir, 'missing.csv')], /--trace: cannot read .*missing\.csv \(ENOENT\)/],
      [['--trace', bad], /line 2: num_gpu: expected a whole number ≥ 1/],
      [['--from-log', '--timeout-factor', '2'], /--timeout-factor: applies to --trace only/],
    ];
    for (const [args, message] of cases) {
      const r = await whatif(args);
      expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(message)]);
    }
  });
});

// A recorded log: a (1 GPU) runs 0–60 s; b (2 GPUs, timeout 10 min) was submitted at 1 s and ran
// 60–90 s; c (1 GPU, timeout 1 min) at 2 s ran 90–100 s; d was cancelled while queued; e is
// still queued. On 2 GPUs FIFO keeps c behind b; backfill starts c at 2 s (its timeout ends it
// before b's reservation at a's deadline, 1 h).
const T0 = Date.parse('2026-12-04T10:00:00Z');
async function recordLog(db: Database): Promise<void> {
  const rows: (typeof tables.events.$inferInsert)[] = [];
  const versions = new Map<string, number>();
  const add = (streamId: string, atS: number, e: NewTaskEvent) => {
    const version = (versions.get(streamId) ?? 0) + 1;
    versions.set(streamId, version);
    rows.push({
      streamId,
      streamVersion: version,
      type: e.type,
      data: e.data,
      metadata: { actor: 'test', schemaVersion: CURRENT_SCHEMA_VERSION },
      schemaVersion: CURRENT_SCHEMA_VERSION,
      recordedAt: new Date(T0 + atS * 1000).toISOString(),
    });
  };
  const spec = (name: string, over: Partial<TaskSpec>): TaskSpec => taskSpec(name, { resources: { ...DEFAULT_RESOURCES }, ...over });
  const assigned = (gpuIndexes: number[]): NewTaskEvent => ({
    type: 'TaskAssigned',
    data: {
      devices: gpuIndexes.map((i) => ({
        deviceId: `gpu${i}`,
        gpuIndex: i,
        uuid: null,
        migProfile: null,
        memoryMb: 81_920,
        exclusive: true,
      })),
      runnerId: 'r1',
      attempt: 1,
      grounds: null,
    },
  });
  add('a', 0, { type: 'TaskSubmitted', data: { spec: spec('a', { timeoutMs: 3_600_000 }) } });
  add('a', 0, assigned([0]));
  add('b', 1, { type: 'TaskSubmitted', data: { spec: spec('b', { timeoutMs: 600_000, resources: { ...DEFAULT_RESOURCES, gpus: 2 } }) } });
  add('b', 1, { type: 'TaskQueued', data: {} });
  add('c', 2, { type: 'TaskSubmitted', data: { spec: spec('c', { timeoutMs: 60_000 }) } });
  add('c', 2, { type: 'TaskQueued', data: {} });
  add('d', 3, { type: 'TaskSubmitted', data: { spec: spec('d', {}) } });
  add('d', 3, { type: 'TaskQueued', data: {} });
  add('d', 4, { type: 'TaskCancelled', data: { reason: null } });
  add('e', 5, { type: 'TaskSubmitted', data: { spec: spec('e', {}) } });
  add('e', 5, { type: 'TaskQueued', data: {} });
  add('a', 60, { type: 'TaskCompleted', data: { exitCode: 0 } });
  add('b', 60, assigned([0, 1]));
  add('b', 90, { type: 'TaskCompleted', data: { exitCode: 0 } });
  add('c', 90, assigned([0]));
  add('c', 100, { type: 'TaskFailed', data: { reason: 'exit', message: 'exit 1', exitCode: 1, signal: null } });
  await db.db.insert(tables.events).values(rows);
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`npm run whatif -- --from-log (${backend.kind})`, () => {
    it('replays the log’s finished tasks with their own timeouts, requests and run times, on the GPUs the log used', async () => {
      let env: Record<string, string>;
      let close: () => Promise<void>;
      if (backend.kind === 'pglite') {
        const dataRoot = join(dir, 'data');
        const db = await openDatabase({ dataDir: join(dataRoot, 'pglite') });
        await recordLog(db);
        await db.close();
        env = { TRAINYARD_DATA_DIR: dataRoot };
        close = async () => {};
      } else {
        const db = await openTestDatabase(backend);
        await recordLog(db);
        env = { DATABASE_URL: db.url!, TRAINYARD_DB_SCHEMA: db.schema };
        close = () => db.close();
      }
      try {
        const { code, stdout, stderr } = await whatif(['--from-log', '--json'], env);
        expect(code, stderr).toBe(0);
        // fifo: waits a 0, b 59, c 88 (behind b); backfill: c starts at once (2 s), b at 60.
        expect(jsonLines(stdout)).toEqual([
          {
            policy: 'fifo',
            gpus: 2,
            jobs: 3,
            utilisation: 0.65,
            waitMeanS: 49,
            waitP50S: 59,
            waitP99S: 87.42,
            waitMaxS: 88,
            makespanS: 100,
          },
          {
            policy: 'backfill',
            gpus: 2,
            jobs: 3,
            utilisation: 0.7222,
            waitMeanS: 19.667,
            waitP50S: 0,
            waitP99S: 57.82,
            waitMaxS: 59,
            makespanS: 90,
          },
        ]);
        const table = await whatif(['--from-log'], env);
        expect(table.stdout).toMatch(/1 task\(s\) ended without running: left out/);
        expect(table.stdout).toMatch(/1 task\(s\) not finished yet: left out/);
      } finally {
        await close();
      }
    });
  });
}
