// `trainyard submit --sweep`, end to end: the real server (PGlite, the simulated trainer, one GPU
// slot) and the real `trainyard` bin as a child process. The grid goes as one tasks.createMany
// call: a table of the created tasks with the swept settings, --json the call's answer, the same
// idempotency key again submits nothing, and a bad grid or a bad value writes nothing.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '@trainyard/store/testing';
import { DATASET, REPO_ROOT, startServer, type RunningServer } from '@trainyard/server/testing';

const BIN = join(REPO_ROOT, 'packages/cli/bin/trainyard.mjs');
const backend = backends().find((b) => b.kind === 'pglite')!;

function cli(url: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: REPO_ROOT, env: { ...process.env, TRAINYARD_URL: url, COLUMNS: '160' }, timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

describe('trainyard submit --sweep (PGlite)', { timeout: 240_000 }, () => {
  let s: RunningServer;
  const base = ['submit', '--model', 'Qwen/Qwen2.5-Coder-0.5B-Instruct', '--dataset', DATASET, '--no-upload', '--epochs', '1'];
  const sim = ['--simulate', '{"steps":100000,"stepMs":100}'];
  const count = async () => (await s.client.tasks.list.query({ limit: 200 })).items.length;

  beforeAll(async () => {
    s = await startServer({ backend, env: { TRAINYARD_GPU_SLOTS: '1' }, startTimeoutMs: 200_000 });
  }, 300_000);
  afterAll(async () => {
    await s?.dispose();
  });

  it('submits the grid in one call and prints a table of the tasks with the swept settings', async () => {
    const r = await cli(s.url, [...base, ...sim, '--name', 'grid', '--sweep', 'learningRate=1e-4,2e-4 loraRank=8,16']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('submitted 4 tasks in one call (learningRate × 2, loraRank × 2)');
    expect(lines[1]).toMatch(/^ID\s+STATUS\s+learningRate\s+loraRank\s+NAME$/);
    expect(lines.slice(2).map((l) => l.split(/\s{2,}/).slice(1))).toEqual([
      ['PREPARING', '0.0001', '8', 'grid learningRate=0.0001 loraRank=8'],
      ['QUEUED', '0.0001', '16', 'grid learningRate=0.0001 loraRank=16'],
      ['QUEUED', '0.0002', '8', 'grid learningRate=0.0002 loraRank=8'],
      ['QUEUED', '0.0002', '16', 'grid learningRate=0.0002 loraRank=16'],
    ]);
    // Queued in the grid's order.
    const queue = await s.client.queue.get.query();
    expect(queue.queued.map((q) => q.task.spec.name)).toEqual([
      'grid learningRate=0.0001 loraRank=16',
      'grid learningRate=0.0002 loraRank=8',
      'grid learningRate=0.0002 loraRank=16',
    ]);
  });

  it('--json prints the call’s answer; the same idempotency key again submits nothing', async () => {
    const args = [...base, ...sim, '--sweep', 'lora-rank=4,32', '--idempotency-key', 'cli-sweep', '--json'];
    const first = await cli(s.url, args);
    expect(first.code, first.stderr).toBe(0);
    const doc = JSON.parse(first.stdout) as { created: boolean; tasks: { id: string; spec: { config: { loraRank: number } } }[] };
    expect(doc.created).toBe(true);
    expect(doc.tasks.map((t) => t.spec.config.loraRank)).toEqual([4, 32]);
    const before = await count();
    const again = await cli(s.url, args.slice(0, -1));
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/^these 2 tasks already exist for idempotency key "cli-sweep": nothing new was submitted/);
    for (const t of doc.tasks) expect(again.stdout).toContain(t.id);
    expect(await count()).toBe(before);
  });

  it('a bad grid is a usage error, and a value the service refuses names the item; nothing is written', async () => {
    const before = await count();
    const grid = await cli(s.url, [...base, '--sweep', 'dropout=0.1']);
    expect(grid.code).toBe(2);
    expect(grid.stderr).toMatch(/no setting called "dropout"/);
    const value = await cli(s.url, [...base, ...sim, '--sweep', 'loraRank=8,0']);
    expect(value.code).toBe(2);
    expect(value.stderr).toMatch(/tasks\.1\.config\.loraRank/);
    const follow = await cli(s.url, [...base, '--sweep', 'loraRank=8', '--follow']);
    expect(follow.code).toBe(2);
    expect(await count()).toBe(before);
  });
});
