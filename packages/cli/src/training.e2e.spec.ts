// What the CLI tells of training, end to end: the real server (PGlite, one 80 GB GPU from a fixed
// inventory, the simulated trainer) and the real `trainyard` bin as a child process. `show` draws
// the loss as a sparkline and gives a training task's speed and time left, a queued one's latest
// start, and what each cost (run time, GPU-hours); `ls` has those in columns; `events` gives an
// ending's run time and GPU-hours.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '@trainyard/store/testing';
import { DATASET, eventually, REPO_ROOT, startServer, type RunningServer } from '@trainyard/server/testing';

const BIN = join(REPO_ROOT, 'packages/cli/bin/trainyard.mjs');
const MODEL = 'Qwen/Qwen2.5-Coder-0.5B-Instruct';
const backend = backends().find((b) => b.kind === 'pglite')!;

function cli(url: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: REPO_ROOT, env: { ...process.env, TRAINYARD_URL: url, TRAINYARD_USER: 'cli-training', ...env }, timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

describe('trainyard CLI: training figures (PGlite)', { timeout: 240_000 }, () => {
  let s: RunningServer;
  const run = async (args: string[]) => {
    const r = await cli(s.url, args);
    expect(r.code, `trainyard ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(0);
    return r.stdout;
  };
  const submit = async (name: string, sim: string, extra: string[] = []) =>
    JSON.parse(
      await run(['submit', '--model', MODEL, '--dataset', DATASET, '--epochs', '1', '--simulate', sim, '--name', name, '--json', ...extra]),
    ) as { id: string };

  let done: { id: string };
  let running: { id: string };
  let queued: { id: string };

  beforeAll(async () => {
    s = await startServer({ backend, env: { TRAINYARD_GPU_INVENTORY: '[{"name":"A100","memoryGb":80}]' } });
    done = await submit('cli-done', '{"steps":16,"stepMs":150}', ['--follow']);
    running = await submit('cli-running', '{"steps":5000,"stepMs":200}', ['--timeout', '30m']);
    queued = await submit('cli-queued', '{"steps":5}', ['--timeout', '10m']);
    // A few seconds of training, so its speed is measured.
    await eventually(async () => ((await s.client.tasks.get.query({ id: running.id })).progress.step ?? 0) >= 8, 'steps', 60_000);
  }, 120_000);
  afterAll(async () => {
    await s?.dispose();
  });

  it('show: the loss as a sparkline, the run time and GPU-hours of a finished task', async () => {
    const out = await run(['show', done.id]);
    const metrics = await s.client.tasks.metrics.query({ id: done.id });
    const losses = metrics.points.map((p) => p.loss!);
    const line = /^loss:\s+(\S+) ([▁▂▃▄▅▆▇█]+) (\S+) \((\d+) reports\)$/m.exec(out);
    expect(line, out).not.toBeNull();
    expect([Number(line![1]), Number(line![3]), Number(line![4])]).toEqual([losses[0], losses.at(-1), losses.length]);
    // Not a terminal: 40 columns at most, one block per report when fewer; the loss falls.
    expect(line![2]!.length).toBe(Math.min(40, losses.length));
    expect(line![2]!.startsWith('█')).toBe(true);
    expect(line![2]!.endsWith('▁')).toBe(true);
    expect(out).toMatch(/^ran for:\s+\d+(\.\d)?s$/m);
    expect(out).toMatch(/^gpu hours:\s+<0\.01 \(1 device\)$/m);
    expect(out).toMatch(/^peak gpu memory:\s+-$/m);
    expect(out).not.toMatch(/^speed:/m);
  });

  it('show: a training task’s speed, time left and running time; a queued one’s latest start', async () => {
    const out = await run(['show', running.id]);
    expect(out).toMatch(/^loss:\s+\S+ [▁▂▃▄▅▆▇█]+ \S+ \(\d+ reports?\)$/m);
    expect(out).toMatch(/^speed:\s+\d+(\.\d)? steps\/s$/m);
    expect(out).toMatch(/^time left:\s+(\d+[hms])+$/m);
    expect(out).toMatch(/^running for:\s+\d+(\.\d)?s$/m);
    expect(out).toMatch(/^gpu hours:\s+(<0\.01|0\.\d\d) \(1 device\)$/m);
    const waiting = await run(['show', queued.id]);
    const q = await s.client.queue.get.query();
    const expected = q.queued.find((e) => e.task.id === queued.id)!.expectedStart!;
    const local = new Date(expected);
    const pad = (n: number) => String(n).padStart(2, '0');
    const at = `${local.getFullYear()}-${pad(local.getMonth() + 1)}-${pad(local.getDate())} ${pad(local.getHours())}:${pad(local.getMinutes())}:${pad(local.getSeconds())}`;
    expect(waiting).toContain(`starts by:         ${at} (an upper bound: the tasks running and ahead run to their timeouts)`);
    expect(waiting).toMatch(/^gpu hours:\s+-$/m);
    expect(waiting).toMatch(/^loss:\s+-$/m);
  });

  it('ls: run time, GPU-hours and what comes next in columns', async () => {
    const out = await run(['ls']);
    expect(out.split('\n')[0]).toMatch(/\s+RAN\s+GPU-H\s+ETA$/);
    expect(out).toMatch(new RegExp(`^${done.id}\\s+cli-done\\s+COMPLETED\\s.*\\s\\d+(\\.\\d)?s\\s+<0\\.01\\s+-$`, 'm'));
    expect(out).toMatch(
      new RegExp(`^${running.id}\\s+cli-running\\s+TRAINING\\s.*\\s\\d+(\\.\\d)?s\\s+(<0\\.01|0\\.\\d\\d)\\s+(\\d+[hms])+ left$`, 'm'),
    );
    expect(out).toMatch(new RegExp(`^${queued.id}\\s+cli-queued\\s+QUEUED\\s.*\\s-\\s+-\\s+by \\d\\d:\\d\\d:\\d\\d$`, 'm'));
  });

  it('ls and events fit the terminal: at 60 columns the first columns, cut; at 160 more of them', async () => {
    const narrow = await cli(s.url, ['ls'], { COLUMNS: '60' });
    expect(narrow.code).toBe(0);
    const lines = narrow.stdout.trimEnd().split('\n');
    for (const l of lines) expect(l.length, l).toBeLessThanOrEqual(60);
    expect(lines[0]).toMatch(/^ID\s+NAME\s+STATUS\s+PROGRESS$/);
    // The widest column gives first: the progress is cut, the name kept. Where the cut falls
    // moves with the percentage's width ("0.4%", "1%", "12%"), so only its start is fixed.
    expect(narrow.stdout).toMatch(new RegExp(`^${running.id}\\s+cli-running\\s+TRAINING\\s+[\\d.]+% epoch 1/1[^\\n]*…$`, 'm'));
    const wide = await cli(s.url, ['ls'], { COLUMNS: '160' });
    const wideLines = wide.stdout.trimEnd().split('\n');
    for (const l of wideLines) expect(l.length, l).toBeLessThanOrEqual(160);
    expect(wideLines[0]).toMatch(/^ID\s+NAME\s+STATUS\s+PROGRESS\s+QUEUE\/DEVICES\s+.*\s+ETA$/);
    const events = await cli(s.url, ['events', '--task', done.id], { COLUMNS: '60' });
    for (const l of events.stdout.trimEnd().split('\n')) expect(l.length, l).toBeLessThanOrEqual(60);
    expect(events.stdout.split('\n')[0]).toMatch(/^TIME\s+TYPE\s+DETAIL$/);
  });

  it('events: an ending with its run time and GPU-hours', async () => {
    const out = await run(['events', '--task', done.id]);
    expect(out).toMatch(/TaskCompleted\s+\S+\s+exit code 0; ran \d+(\.\d)?s, <0\.01 GPU-h$/m);
    // Without the assignment in the listing, nothing is made up.
    const only = await run(['events', '--task', done.id, '--type', 'TaskCompleted']);
    expect(only).toMatch(/TaskCompleted\s+\S+\s+exit code 0$/m);
  });
});
