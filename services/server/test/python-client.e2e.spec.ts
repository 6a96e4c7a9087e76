// examples/python_client.py (standard library only) against the real server, run by the system's
// python3 as a SAGE script would run it: submit with an upload and follow the progress to the
// end, download and unpack the output, cancel a waiting task, and a refused dataset's reason.
// In CI a missing python3 is a failure, not a skip.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, skipLoudlyOrFail } from '@trainyard/store/testing';
import { DATASET, eventually, installFakeNvidiaSmi, REPO_ROOT, startServer, type RunningServer } from './harness';

const PYTHON = process.env.PYTHON3_PATH ?? '/usr/bin/python3';
const CLIENT = join(REPO_ROOT, 'examples/python_client.py');
const MODEL = 'Qwen/Qwen2.5-Coder-0.5B-Instruct';

const hasPython = existsSync(PYTHON);
if (!hasPython)
  skipLoudlyOrFail(`${PYTHON} not found: the Python client's spec cannot run`, 'apt-get install python3, or set PYTHON3_PATH');

/** Runs the client with these arguments (an argument list, no shell); resolves when it exits. */
function client(url: string, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(PYTHON, [CLIENT, '--url', url, ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c) => (stdout += c));
    p.stderr.on('data', (c) => (stderr += c));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe.skipIf(!hasPython)('the standard-library Python client', () => {
  let s: RunningServer;
  let tmp: string;
  let doneId: string;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'trainyard-python-'));
    mkdirSync(join(tmp, 'datasets'));
    s = await startServer({
      backend: backends()[0]!,
      env: { TRAINYARD_DATASETS_ROOT: join(tmp, 'datasets'), TRAINYARD_NVIDIA_SMI: installFakeNvidiaSmi(join(tmp, 'bin'), 'one-gpu').path },
    });
  });

  afterAll(async () => {
    await s?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('submits a local dataset (uploaded), follows it to completed and lists it', async () => {
    const r = await client(s.url, 'submit', DATASET, '--model', MODEL, '--epochs', '2', '--follow', '--interval', '0.1');
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^uploaded tiny-dataset\.jsonl as .*\/datasets\/uploads\/.*-tiny-dataset\.jsonl$/);
    const [, id, status] = /^task (\S+) (\S+)$/.exec(lines[1]!)!;
    expect(['queued', 'preparing', 'training']).toContain(status);
    doneId = id!;
    expect(lines.at(-1)).toMatch(new RegExp(`^${id} completed 100% epoch 2/2 loss \\d+\\.\\d{4}$`));
    // Progress was followed, not just the end.
    expect(lines.filter((l) => l.startsWith(id!)).length).toBeGreaterThan(1);
    const task = await s.client.tasks.get.query({ id: id! });
    expect(task.status).toBe('COMPLETED');
    expect(task.spec.config).toMatchObject({
      epochs: 2,
      batchSize: 1,
      gradientAccumulation: 16,
      learningRate: 5e-5,
      maxLength: 1024,
      load8bit: true,
    });

    const list = await client(s.url, 'list');
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toContain(`${id} completed 100%`);
  });

  it("downloads the output as a .tar.gz that unpacks to the task's output folder", async () => {
    const out = join(tmp, 'model.tar.gz');
    const r = await client(s.url, 'download', doneId, '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^saved .*model\.tar\.gz \(\d+ bytes\)/);
    mkdirSync(join(tmp, 'unpacked'));
    await tar.x({ file: out, cwd: join(tmp, 'unpacked'), strict: true });
    expect(readFileSync(join(tmp, 'unpacked', doneId, 'adapter_config.json'), 'utf8')).toBe(
      readFileSync(join(s.dataDir, 'outputs', doneId, 'adapter_config.json'), 'utf8'),
    );
  });

  it('cancels a waiting task', async () => {
    const blocker = await s.client.tasks.create.mutate({
      model: MODEL,
      datasetPath: (await s.client.tasks.get.query({ id: doneId })).spec.datasetPath,
      config: { epochs: 1, simulate: { steps: 10_000, stepMs: 200 } },
    });
    await eventually(async () => (await s.client.tasks.get.query({ id: blocker.id })).status === 'TRAINING', 'the blocker to train');
    const submitted = await client(s.url, 'submit', DATASET, '--model', MODEL);
    expect(submitted.code, submitted.stderr).toBe(0);
    const [, id, status] = /^task (\S+) (\S+)$/m.exec(submitted.stdout)!;
    expect(status).toBe('queued');
    const cancelled = await client(s.url, 'cancel', id!);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stdout.trim()).toBe(`task ${id} cancelled`);
    const followed = await client(s.url, 'follow', id!, '--interval', '0.1');
    expect(followed.code).toBe(1);
    expect(followed.stdout.trim()).toMatch(new RegExp(`^${id} cancelled `));
    expect((await client(s.url, 'cancel', blocker.id)).code).toBe(0);
  });

  it('says why the service refused a request, with exit code 2, and 3 when it cannot reach it', async () => {
    const bad = join(tmp, 'bad.jsonl');
    writeFileSync(bad, '{"text":"ok"}\nnot json\n');
    // The upload checks JSON lines as they arrive.
    const refused = await client(s.url, 'submit', bad, '--model', MODEL);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^error 400: bad\.jsonl: line 2 is not JSON/);
    // A path on the server that is not a dataset it may read.
    const outside = await client(s.url, 'submit', '/etc/passwd', '--on-server', '--model', MODEL);
    expect(outside.code).toBe(2);
    expect(outside.stderr).toMatch(/^error 400: dataset_file: dataset \/etc\/passwd not found or not allowed/);
    const missing = await client(s.url, 'download', 'tnosuchtask');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^error 404: Task not found: tnosuchtask/);
    const away = await client('http://127.0.0.1:9', 'list');
    expect(away.code).toBe(3);
    expect(away.stderr).toMatch(/^error: cannot reach http:\/\/127\.0\.0\.1:9/);
  });
});
