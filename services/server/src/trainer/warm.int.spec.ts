// Warm trainers for real: a standby shepherd that starts the simulated trainer ahead of need
// (and the tiny torch trainer, under Debian's python3-torch), hands it a run, and falls back to a
// cold start when the warm one died while waiting or does not fit. Real processes; waits on
// conditions with generous timeouts; nothing asserts on timing.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { skipLoudlyOrFail } from '@trainyard/store/testing';
import { isSameProcessAlive, signalGroup } from './proc';
import { parseTrainerLine } from './protocol';
import { launchShepherd, readExit, readTrainerInfo, StandbyShepherd, waitForTrainerInfo, type LaunchSpec } from './run';
import { warmSpecOf, type WarmSpec } from './warm.mjs';

const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../..');
const SIMULATED = join(REPO_ROOT, 'trainers/simulated-trainer.mjs');
const TINY_TORCH = join(REPO_ROOT, 'trainers/tiny_torch_trainer.py');
const DATASET = join(REPO_ROOT, 'examples/tiny-dataset.jsonl');
const PYTHON = process.env.PYTHON3_PATH ?? '/usr/bin/python3';
const TIMEOUT = 90_000;

const root = mkdtempSync(join(tmpdir(), 'trainyard-warm-'));
const runsDir = join(root, 'runs');
mkdirSync(runsDir);
let counter = 0;
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const fn of cleanups.splice(0)) {
    try {
      fn();
    } catch {
      // best effort
    }
  }
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function env(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'LANG']) if (process.env[k]) out[k] = process.env[k]!;
  return { ...out, CUDA_DEVICE_ORDER: 'PCI_BUS_ID' };
}

/** A launch of `argv` for a fresh task, with its spec file written. */
function launchOf(argv: string[], config: Record<string, unknown>): LaunchSpec {
  const id = `w${++counter}`;
  const runDir = join(runsDir, id, 'attempt-1');
  mkdirSync(runDir, { recursive: true });
  const outputDir = join(root, 'outputs', id);
  const specFile = join(runDir, 'task.json');
  writeFileSync(specFile, JSON.stringify({ id, model: 'm', datasetPath: DATASET, outputDir, config }));
  return {
    runDir,
    argv,
    cwd: REPO_ROOT,
    env: { ...env(), CUDA_VISIBLE_DEVICES: '7', TRAINYARD_TASK_SPEC: specFile, TRAINYARD_TASK_ID: id, TRAINYARD_OUTPUT_DIR: outputDir },
  };
}

async function until<T>(fn: () => T | Promise<T>, what: string, ms = 60_000): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The shepherd's children (its warm trainer), from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

async function startWarm(spec: WarmSpec): Promise<{ standby: StandbyShepherd; trainerPid: number }> {
  const standby = await StandbyShepherd.start(runsDir, spec);
  cleanups.push(() => standby.dispose());
  await until(() => standby.warmTrainer === 'ready', 'the warm trainer to be ready');
  const [trainerPid] = childrenOf(standby.pid);
  expect(trainerPid).toBeDefined();
  cleanups.push(() => signalGroup(trainerPid!, 'SIGKILL'));
  return { standby, trainerPid: trainerPid! };
}

const outputLines = (runDir: string) =>
  readFileSync(join(runDir, 'output.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { stream: string; line: string });

async function runToExit(spec: LaunchSpec, standby: StandbyShepherd | null) {
  await launchShepherd(spec, standby);
  const info = await waitForTrainerInfo(spec.runDir, 60_000);
  expect(info).not.toHaveProperty('error');
  const exit = await until(() => readExit(spec.runDir), 'exit.json');
  const trainer = JSON.parse(readFileSync(join(spec.runDir, 'trainer.json'), 'utf8')) as { pid: number; warm?: boolean };
  return { exit, trainer, lines: outputLines(spec.runDir) };
}

describe('warm trainers (simulated trainer)', () => {
  const SIM = { epochs: 1, simulate: { steps: 2, stepMs: 10, startupMs: 0 } };

  it('a warm trainer takes an assignment: the same process runs the task, with the task devices', { timeout: TIMEOUT }, async () => {
    const spec = launchOf([process.execPath, SIMULATED], SIM);
    const { standby, trainerPid } = await startWarm(warmSpecOf(spec));
    const { exit, trainer, lines } = await runToExit(spec, standby);
    expect(exit.code).toBe(0);
    expect(trainer).toMatchObject({ pid: trainerPid, warm: true });
    const text = lines.map((l) => l.line);
    expect(text).toContain(`standby: assigned task ${spec.env.TRAINYARD_TASK_ID} (CUDA_VISIBLE_DEVICES=7)`);
    expect(text.some((l) => parseTrainerLine(l).kind === 'message' && l.includes('"phase"'))).toBe(true);
    // The ready line is the shepherd's business, not the task's log.
    expect(text).not.toContain('{"type":"ready"}');
  });

  it('a warm trainer that dies while waiting costs only a cold start: the task still runs', { timeout: TIMEOUT }, async () => {
    const spec = launchOf([process.execPath, SIMULATED], SIM);
    const { standby, trainerPid } = await startWarm(warmSpecOf(spec));
    process.kill(trainerPid, 'SIGKILL');
    await until(() => standby.warmTrainer === 'died', 'the standby to see its trainer die');
    expect(standby.ready).toBe(true); // still a standby shepherd, now a plain one
    const { exit, trainer, lines } = await runToExit(spec, standby);
    expect(exit.code).toBe(0);
    expect(trainer.pid).not.toBe(trainerPid);
    expect(trainer.warm).toBeUndefined();
    expect(lines.some((l) => l.line.startsWith('standby: assigned'))).toBe(false);
  });

  it('a warm trainer of another command is stopped and the task starts cold', { timeout: TIMEOUT }, async () => {
    const spec = launchOf([process.execPath, SIMULATED], SIM);
    const { standby, trainerPid } = await startWarm({ ...warmSpecOf(spec), env: { ...warmSpecOf(spec).env, EXTRA: '1' } });
    const startTime = readTrainerStart(trainerPid);
    const { exit, trainer } = await runToExit(spec, standby);
    expect(exit.code).toBe(0);
    expect(trainer.pid).not.toBe(trainerPid);
    await until(() => !isSameProcessAlive(trainerPid, startTime), 'the unfit warm trainer to end');
  });

  it('a retired warm standby (stdin closed) takes its warm trainer with it', { timeout: TIMEOUT }, async () => {
    const spec = launchOf([process.execPath, SIMULATED], SIM);
    const { standby, trainerPid } = await startWarm(warmSpecOf(spec));
    const info = { pid: trainerPid, startTime: readTrainerStart(trainerPid) };
    standby.dispose();
    await until(() => !isSameProcessAlive(info.pid, info.startTime), 'the warm trainer to exit');
    expect(await readTrainerInfo(spec.runDir)).toBeNull();
  });
});

function readTrainerStart(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
}

function torchMissing(): string | null {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  const r = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
  return r.status === 0 ? null : `${PYTHON} cannot import torch`;
}
const missing = torchMissing();
if (missing)
  skipLoudlyOrFail(`${missing}: the warm tiny torch trainer spec cannot run`, 'apt-get install python3-torch, or set PYTHON3_PATH');

describe.skipIf(missing !== null)('warm trainers (tiny torch trainer)', () => {
  it('imports torch in standby, then trains the task it is assigned, with its devices', { timeout: TIMEOUT }, async () => {
    const spec = launchOf([PYTHON, TINY_TORCH], { epochs: 1, batchSize: 1, gradientAccumulation: 16, learningRate: 0.01 });
    const { standby, trainerPid } = await startWarm(warmSpecOf(spec));
    const { exit, trainer, lines } = await runToExit(spec, standby);
    expect(exit.code, lines.map((l) => l.line).join('\n')).toBe(0);
    expect(trainer).toMatchObject({ pid: trainerPid, warm: true });
    const text = lines.map((l) => l.line);
    expect(text).toContain('CUDA_VISIBLE_DEVICES=7: not used, this trainer runs on the CPU');
    expect(text.some((l) => l.startsWith('{"type":"artifact"'))).toBe(true);
  });
});
