// A finished task's results from the CLI, end to end: the real server (PGlite, the simulated
// trainer) and the real `trainyard` bin as a child process. `download` saves the output folder as
// a .tar.gz (or writes it to stdout), never over a file unless asked, and exits with the codes
// scripts rely on when it cannot; `show` gives the output folder and artifacts with their sizes.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '@trainyard/store/testing';
import { DATASET, REPO_ROOT, startServer, type RunningServer } from '@trainyard/server/testing';

const BIN = join(REPO_ROOT, 'packages/cli/bin/trainyard.mjs');
const MODEL = 'Qwen/Qwen2.5-Coder-0.5B-Instruct';
const backend = backends().find((b) => b.kind === 'pglite')!;

function cli(url: string, args: string[], cwd: string): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd, env: { ...process.env, TRAINYARD_URL: url, TRAINYARD_USER: 'cli-results' }, timeout: 120_000, encoding: 'buffer' },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr: stderr.toString() });
      },
    );
  });
}

describe('trainyard CLI: results (PGlite)', { timeout: 240_000 }, () => {
  let s: RunningServer;
  let dir: string;
  let done: { id: string };
  let running: { id: string };
  const run = async (args: string[], code = 0) => {
    const r = await cli(s.url, args, dir);
    expect(r.code, `trainyard ${args.join(' ')}\n${r.stdout.toString()}\n${r.stderr}`).toBe(code);
    return r;
  };
  const submit = async (name: string, sim: string, extra: string[] = []) =>
    JSON.parse(
      (
        await run([
          'submit',
          '--model',
          MODEL,
          '--dataset',
          DATASET,
          '--epochs',
          '1',
          '--simulate',
          sim,
          '--name',
          name,
          '--json',
          ...extra,
        ])
      ).stdout.toString(),
    ) as { id: string };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cli-results-'));
    s = await startServer({ backend });
    done = await submit('cli-results-done', '{"steps":3,"stepMs":20}', ['--follow']);
    running = await submit('cli-results-running', '{"steps":5000,"stepMs":100}');
  }, 120_000);
  afterAll(async () => {
    await s?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('download saves the output folder as a .tar.gz here, and will not overwrite it unless asked', async () => {
    const r = await run(['download', done.id]);
    const file = `${done.id}_finetuned_model.tar.gz`;
    expect(r.stdout.toString()).toMatch(
      new RegExp(`^saved ${file} \\(\\d+(\\.\\d)? (bytes|KB)\\): the outputs of task ${done.id}; unpack with \`tar -xzf ${file}\`\\n$`),
    );
    // A tar holds each entry's name in its header, in the clear once unzipped.
    const unpacked = gunzipSync(readFileSync(join(dir, file)));
    expect(unpacked.includes(`${done.id}/adapter_config.json`)).toBe(true);
    // No partial file is left beside it.
    expect(readdirSync(dir).filter((f) => f.endsWith('.part'))).toEqual([]);
    const again = await run(['download', done.id], 2);
    expect(again.stderr).toContain(`${file} exists: add --force to replace it, or -o another file`);
    writeFileSync(join(dir, 'mine.tar.gz'), 'old');
    await run(['download', done.id, '-o', 'mine.tar.gz', '--force']);
    expect(gunzipSync(readFileSync(join(dir, 'mine.tar.gz'))).includes(`${done.id}/adapter_config.json`)).toBe(true);
  });

  it('download -o - writes the archive to stdout', async () => {
    const r = await run(['download', done.id, '-o', '-']);
    // gzip's magic number.
    expect([...r.stdout.subarray(0, 2)]).toEqual([0x1f, 0x8b]);
  });

  it('download exits 5 for a task not completed, 4 for an unknown one, 6 when nothing answers', async () => {
    const notYet = await run(['download', running.id, '-o', 'x.tar.gz'], 5);
    expect(notYet.stderr).toMatch(/^error: task \S+: Task is not completed yet .*; only a COMPLETED task's outputs can be downloaded\n$/);
    expect(existsSync(join(dir, 'x.tar.gz'))).toBe(false);
    expect((await run(['download', 'tnosuchtask'], 4)).stderr).toMatch(/^error: task tnosuchtask was not found/);
    const dead = await cli('http://127.0.0.1:9', ['download', done.id], dir);
    expect(dead.code).toBe(6);
    expect(dead.stderr).toContain('cannot reach Trainyard at http://127.0.0.1:9');
  });

  it('show gives the output folder and artifacts with their sizes', async () => {
    const out = (await run(['show', done.id])).stdout.toString();
    const folder = join(s.dataDir, 'outputs', done.id);
    expect(out).toMatch(new RegExp(`^output dir:\\s+${folder} \\(\\d+(\\.\\d)? (bytes|KB) in \\d+ files?\\)$`, 'm'));
    expect(out).toMatch(new RegExp(`^ {4}${folder} {2}\\(\\d+(\\.\\d)? (bytes|KB) in \\d+ files?\\)$`, 'm'));
    await s.client.tasks.cancel.mutate({ id: running.id });
  });
});
