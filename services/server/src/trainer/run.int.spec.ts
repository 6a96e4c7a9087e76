// Real processes: shepherd + simulated trainer. Everything waits on conditions with
// generous timeouts; nothing asserts on timing (this must hold on a loaded 2-core box).
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { findShepherds, isSameProcessAlive, readProcessStartTime, signalGroup } from './proc';
import { parseTrainerLine } from './protocol';
import {
  RunTailer,
  SHEPHERD_PATH,
  StandbyShepherd,
  discardUnstartedLaunch,
  launchShepherd,
  readExit,
  readTrainerInfo,
  waitForTrainerInfo,
  type ExitInfo,
  type LaunchSpec,
  type OutputLine,
  type TrainerInfo,
} from './run';

const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../..');
const SIMULATED = join(REPO_ROOT, 'trainers/simulated-trainer.mjs');
const RUN_TS = fileURLToPath(new URL('./run.ts', import.meta.url));
const TEST_TIMEOUT = 90_000;
const WAIT_TIMEOUT = 60_000;

const root = mkdtempSync(join(tmpdir(), 'trainyard-run-'));
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

function baseEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  return { ...env, ...extra };
}

interface Sim {
  steps?: number;
  stepMs?: number;
  failAtStep?: number;
  exitCode?: number;
  crashSignal?: string;
  ignoreSigterm?: boolean;
  logLinesPerStep?: number;
  startupMs?: number;
}

/** A fresh case directory with a task spec; returns the launch spec for the simulated trainer. */
function simulatedRun(simulate: Sim, epochs = 2, extra: Partial<LaunchSpec> = {}): LaunchSpec {
  const dir = join(root, `case-${++counter}`);
  const outputDir = join(dir, 'output');
  const specFile = join(dir, 'spec.json');
  const spec = {
    id: `task-${counter}`,
    name: `case ${counter}`,
    model: 'tiny-llama',
    datasetPath: join(dir, 'data.jsonl'),
    outputDir,
    config: {
      epochs,
      batchSize: 2,
      gradientAccumulation: 1,
      learningRate: 2e-4,
      maxLength: 256,
      load8bit: false,
      load4bit: false,
      loraRank: 8,
      loraAlpha: 16,
      simulate,
    },
  };
  rmSync(dir, { recursive: true, force: true });
  // runDir is created by launchShepherd; the spec lives next to it.
  mkdirSync(dir, { recursive: true });
  writeFileSync(specFile, JSON.stringify(spec));
  return {
    runDir: join(dir, 'run'),
    argv: [process.execPath, SIMULATED],
    env: baseEnv({
      TRAINYARD_TASK_SPEC: specFile,
      TRAINYARD_TASK_ID: spec.id,
      TRAINYARD_OUTPUT_DIR: outputDir,
      CUDA_VISIBLE_DEVICES: '0',
    }),
    cwd: REPO_ROOT,
    ...extra,
  };
}

function rawRun(argv: string[], extra: Partial<LaunchSpec> = {}): LaunchSpec {
  const dir = join(root, `case-${++counter}`);
  return { runDir: join(dir, 'run'), argv, env: baseEnv(), cwd: REPO_ROOT, ...extra };
}

/** Launches and registers a cleanup that SIGKILLs the trainer group if it is still ours. */
async function launch(spec: LaunchSpec): Promise<TrainerInfo> {
  await launchShepherd(spec);
  const info = await waitForTrainerInfo(spec.runDir, WAIT_TIMEOUT);
  if ('error' in info) throw new Error(info.error);
  cleanups.push(() => {
    if (isSameProcessAlive(info.pid, info.startTime)) signalGroup(info.pid, 'SIGKILL');
  });
  return info;
}

async function waitFor<T>(
  what: string,
  probe: () => T | null | undefined | false | Promise<T | null | undefined | false>,
  timeoutMs = WAIT_TIMEOUT,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Tails a run from `fromSeq` to its end. */
async function tailAll(runDir: string, fromSeq = 0): Promise<{ lines: OutputLine[]; exit: ExitInfo }> {
  const lines: OutputLine[] = [];
  const tailer = new RunTailer(runDir, fromSeq, (l) => {
    lines.push(l);
  });
  cleanups.push(() => tailer.stop());
  tailer.start();
  const exit = await withTimeout(tailer.exited, WAIT_TIMEOUT, `exit of ${runDir}`);
  return { lines, exit };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function expectContiguous(lines: OutputLine[], first = 1): void {
  lines.forEach((l, i) => expect(l.seq).toBe(first + i));
}

function messages(lines: OutputLine[]) {
  return lines
    .filter((l) => l.stream === 'stdout')
    .map((l) => parseTrainerLine(l.line))
    .flatMap((p) => (p.kind === 'message' ? [p.message] : []));
}

describe('shepherd + RunTailer with the simulated trainer', () => {
  it(
    'runs to completion: ordered lines, phase, progress, artifact, exit 0',
    async () => {
      const spec = simulatedRun({ steps: 4, stepMs: 10, logLinesPerStep: 2 }, 2);
      const info = await launch(spec);
      expect(info.pid).toBeGreaterThan(1);
      expect(info.startTime).toMatch(/^\d+$/);

      const { lines, exit } = await tailAll(spec.runDir);
      expect(exit.code).toBe(0);
      expect(exit.signal).toBeNull();
      expect(exit.error).toBeUndefined();
      expectContiguous(lines);
      for (let i = 1; i < lines.length; i++) {
        expect(lines[i]!.t).toBeGreaterThanOrEqual(lines[i - 1]!.t);
      }

      const msgs = messages(lines);
      expect(msgs[0]).toEqual({ type: 'phase', phase: 'training' });
      const progress = msgs.filter((m) => m.type === 'progress');
      expect(progress).toHaveLength(8);
      expect(progress.map((p) => (p.type === 'progress' ? p.step : -1))).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      const losses = progress.map((p) => (p.type === 'progress' ? p.loss! : 0));
      for (let i = 1; i < losses.length; i++) expect(losses[i]!).toBeLessThan(losses[i - 1]!);
      const artifact = msgs.find((m) => m.type === 'artifact');
      expect(artifact).toBeDefined();
      const adapterDir = artifact!.type === 'artifact' ? artifact!.path : '';
      expect(existsSync(join(adapterDir, 'adapter_config.json'))).toBe(true);

      expect(lines.some((l) => l.line === 'CUDA_VISIBLE_DEVICES=0')).toBe(true);
      expect(lines.some((l) => l.line.startsWith('loading model tiny-llama'))).toBe(true);
      expect(lines.filter((l) => l.stream === 'stderr' && /^step \d+ log/.test(l.line))).toHaveLength(8);
      // The trainer is gone, and its identity cannot be confused with a reused pid.
      expect(isSameProcessAlive(info.pid, info.startTime)).toBe(false);
      expect(await readExit(spec.runDir)).toEqual(exit);
    },
    TEST_TIMEOUT,
  );

  it(
    'reports a failing trainer: exit code and traceback on stderr',
    async () => {
      const spec = simulatedRun({ steps: 5, stepMs: 5, failAtStep: 3, exitCode: 7 }, 1);
      await launch(spec);
      const { lines, exit } = await tailAll(spec.runDir);
      expect(exit.code).toBe(7);
      expect(exit.signal).toBeNull();
      expectContiguous(lines);
      const stderr = lines.filter((l) => l.stream === 'stderr').map((l) => l.line);
      expect(stderr).toContain('Traceback (most recent call last):');
      expect(stderr.some((l) => l.startsWith('RuntimeError: CUDA out of memory'))).toBe(true);
      const steps = messages(lines).flatMap((m) => (m.type === 'progress' ? [m.step] : []));
      expect(steps).toEqual([1, 2]);
      expect(messages(lines).some((m) => m.type === 'artifact')).toBe(false);
    },
    TEST_TIMEOUT,
  );

  it(
    'reports a trainer killed by a signal',
    async () => {
      const spec = simulatedRun({ steps: 4, stepMs: 5, crashSignal: 'SIGSEGV' }, 1);
      await launch(spec);
      const { exit } = await tailAll(spec.runDir);
      expect(exit).toMatchObject({ code: null, signal: 'SIGSEGV' });
    },
    TEST_TIMEOUT,
  );

  it(
    'SIGTERM to the trainer group stops it (exit 143 or SIGTERM)',
    async () => {
      const spec = simulatedRun({ steps: 100_000, stepMs: 20 }, 1);
      const info = await launch(spec);
      const lines: OutputLine[] = [];
      const tailer = new RunTailer(spec.runDir, 0, (l) => void lines.push(l));
      cleanups.push(() => tailer.stop());
      tailer.start();
      await waitFor('first progress', () => messages(lines).some((m) => m.type === 'progress'));
      expect(signalGroup(info.pid, 'SIGTERM')).toBe(true);
      const exit = await withTimeout(tailer.exited, WAIT_TIMEOUT, 'exit');
      expect(exit.code === 143 || exit.signal === 'SIGTERM').toBe(true);
      expect(lines.some((l) => l.line === 'received SIGTERM, saving checkpoint')).toBe(true);
      expectContiguous(lines);
      expect(signalGroup(info.pid, 'SIGTERM')).toBe(false);
    },
    TEST_TIMEOUT,
  );

  it(
    'a trainer that ignores SIGTERM keeps going until SIGKILL',
    async () => {
      const spec = simulatedRun({ steps: 100_000, stepMs: 10, ignoreSigterm: true }, 1);
      const info = await launch(spec);
      const lines: OutputLine[] = [];
      const tailer = new RunTailer(spec.runDir, 0, (l) => void lines.push(l));
      cleanups.push(() => tailer.stop());
      tailer.start();
      await waitFor('first progress', () => messages(lines).some((m) => m.type === 'progress'));
      expect(signalGroup(info.pid, 'SIGTERM')).toBe(true);
      const termAt = await waitFor('SIGTERM acknowledgement', () => {
        const i = lines.findIndex((l) => l.line === 'received SIGTERM, saving checkpoint');
        return i >= 0 ? i + 1 : null;
      });
      // Progress keeps coming after the acknowledgement: it did not stop.
      await waitFor(
        'progress after SIGTERM',
        () => lines.slice(termAt).filter((l) => parseTrainerLine(l.line).kind === 'message').length >= 3,
      );
      expect(await readExit(spec.runDir)).toBeNull();
      expect(isSameProcessAlive(info.pid, info.startTime)).toBe(true);

      expect(signalGroup(info.pid, 'SIGKILL')).toBe(true);
      const exit = await withTimeout(tailer.exited, WAIT_TIMEOUT, 'exit');
      expect(exit).toMatchObject({ code: null, signal: 'SIGKILL' });
      expectContiguous(lines);
    },
    TEST_TIMEOUT,
  );

  it(
    're-attaches from the last consumed seq with no duplicates and no gaps',
    async () => {
      const spec = simulatedRun({ steps: 30, stepMs: 10, logLinesPerStep: 3 }, 1);
      await launch(spec);
      const first: OutputLine[] = [];
      let callsAfterStop = 0;
      let stopped = false;
      const t1 = new RunTailer(spec.runDir, 0, (l) => {
        if (stopped) callsAfterStop++;
        first.push(l);
        if (first.length === 20) {
          stopped = true;
          t1.stop();
        }
      });
      t1.start();
      await waitFor('first tailer to stop', () => stopped);
      expect(t1.lastDeliveredSeq).toBe(20);

      const lastSeen = first[first.length - 1]!.seq;
      const { lines: rest, exit } = await tailAll(spec.runDir, lastSeen);
      expect(exit.code).toBe(0);
      expect(callsAfterStop).toBe(0);
      expect(first).toHaveLength(20);
      const all = [...first, ...rest];
      expectContiguous(all);
      expect(messages(all).some((m) => m.type === 'artifact')).toBe(true);

      // Re-attaching after the run ended replays exactly the tail.
      const { lines: tail } = await tailAll(spec.runDir, all.length - 5);
      expect(tail).toEqual(all.slice(-5));
      const { lines: none } = await tailAll(spec.runDir, all.length);
      expect(none).toEqual([]);
    },
    TEST_TIMEOUT,
  );

  it(
    'the shepherd survives the death of the service that launched it',
    async () => {
      const spec = simulatedRun({ steps: 15, stepMs: 20 }, 2);
      // A stand-in "service": launches the shepherd through run.ts, reports, then idles.
      const {
        service,
        first: { shepherdPid },
      } = await standInService<{ shepherdPid: number }>(
        'launchShepherd',
        [`const r = await launchShepherd(JSON.parse(process.env.LAUNCH_SPEC));`, `process.stdout.write(JSON.stringify(r) + '\\n');`],
        spec,
        'the service to launch the shepherd',
      );
      const info = await waitFor('trainer.json', () => readTrainerInfo(spec.runDir));
      cleanups.push(() => {
        if (isSameProcessAlive(info.pid, info.startTime)) signalGroup(info.pid, 'SIGKILL');
      });

      // The whole service process group dies hard...
      const serviceGone = new Promise((r) => service.once('exit', r));
      signalGroup(service.pid!, 'SIGKILL');
      await withTimeout(serviceGone, WAIT_TIMEOUT, 'service exit');
      // ...and the usual termination signals reach the shepherd too; it ignores them.
      for (const sig of ['SIGTERM', 'SIGHUP', 'SIGINT'] as const) process.kill(shepherdPid, sig);
      expect(readProcessStartTime(shepherdPid)).not.toBeNull();

      const { lines, exit } = await tailAll(spec.runDir);
      expect(exit.code).toBe(0);
      expectContiguous(lines);
      expect(messages(lines).filter((m) => m.type === 'progress')).toHaveLength(30);
      expect(messages(lines).some((m) => m.type === 'artifact')).toBe(true);
      await waitFor('shepherd exit', () => readProcessStartTime(shepherdPid) === null || !isAlive(shepherdPid));
    },
    TEST_TIMEOUT,
  );
});

/**
 * A stand-in "service": a Node process (own group) that runs `body` (ES module lines with run.ts's
 * exports at hand), prints one JSON line with what it launched, then idles until killed. Resolves
 * with the process and that line.
 */
async function standInService<T>(
  imports: string,
  body: string[],
  spec: LaunchSpec,
  what: string,
): Promise<{ service: ChildProcess; first: T }> {
  const script = [`import { ${imports} } from ${JSON.stringify(RUN_TS)};`, ...body, `setInterval(() => {}, 1000);`].join('\n');
  const scriptFile = join(root, `service-${counter++}.mts`);
  writeFileSync(scriptFile, script);
  const service = spawn(process.execPath, ['--import', 'tsx', scriptFile], {
    cwd: REPO_ROOT,
    env: { ...process.env, LAUNCH_SPEC: JSON.stringify(spec) },
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true,
  });
  cleanups.push(() => {
    if (service.exitCode === null && service.signalCode === null) signalGroup(service.pid!, 'SIGKILL');
  });
  let out = '';
  service.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const first = await waitFor(what, () => {
    const nl = out.indexOf('\n');
    return nl >= 0 ? (JSON.parse(out.slice(0, nl)) as T) : null;
  });
  return { service, first };
}

function isAlive(pid: number): boolean {
  const start = readProcessStartTime(pid);
  return start !== null && isSameProcessAlive(pid, start);
}

describe('shepherd output handling', () => {
  it(
    'cuts long lines at a UTF-8 boundary and keeps a final line without newline',
    async () => {
      const code = [
        `console.log("a".repeat(5000));`,
        `console.log("\\u00e9".repeat(3000));`,
        `console.log("short\\r");`,
        `console.log(JSON.stringify({ type: "artifact", path: "p".repeat(5000) }));`,
        `console.error("err line");`,
        `process.stdout.write("tail-no-newline");`,
      ].join('\n');
      const spec = rawRun([process.execPath, '-e', code], { maxLineBytes: 1001 });
      await launch(spec);
      const { lines, exit } = await tailAll(spec.runDir);
      expect(exit.code).toBe(0);
      expectContiguous(lines);
      const stdout = lines.filter((l) => l.stream === 'stdout').map((l) => l.line);
      expect(stdout[0]).toBe(`${'a'.repeat(1001)}… [cut 3999 bytes]`);
      // 'é' is 2 bytes: 1001 would split one, so the cut falls at 1000.
      expect(stdout[1]).toBe(`${'\u00e9'.repeat(500)}… [cut 5000 bytes]`);
      expect(stdout[2]).toBe('short');
      const artifactJson = JSON.stringify({ type: 'artifact', path: 'p'.repeat(5000) });
      expect(stdout[3]).toBe(`${artifactJson.slice(0, 1001)}… [cut ${artifactJson.length - 1001} bytes]`);
      expect(parseTrainerLine(stdout[3]!).kind).toBe('log');
      expect(stdout[4]).toBe('tail-no-newline');
      expect(lines.find((l) => l.stream === 'stderr')?.line).toBe('err line');
    },
    TEST_TIMEOUT,
  );

  it(
    'rate-limits a flood of log lines but never drops protocol lines',
    async () => {
      const total = 20_000;
      const code =
        `for (let i = 0; i < ${total}; i++) {` +
        ` console.log("x" + i);` +
        ` if (i % 1000 === 999) console.log(JSON.stringify({ type: "progress", step: (i + 1) / 1000, totalSteps: 20 }));` +
        `}`;
      const spec = rawRun([process.execPath, '-e', code], { maxLinesPerSecond: 100 });
      await launch(spec);
      const { lines, exit } = await tailAll(spec.runDir);
      expect(exit.code).toBe(0);
      expectContiguous(lines);
      const kept = lines.filter((l) => /^x\d+$/.test(l.line));
      const markers = lines
        .map((l) => /^\[trainyard\] dropped (\d+) lines \(rate limit\)$/.exec(l.line))
        .flatMap((m, i) => (m ? [{ n: Number(m[1]), stream: lines[i]!.stream }] : []));
      expect(markers.length).toBeGreaterThanOrEqual(1);
      expect(markers.every((m) => m.stream === 'stderr')).toBe(true);
      // Every line is accounted for: stored or counted as dropped.
      expect(kept.length + markers.reduce((s, m) => s + m.n, 0)).toBe(total);
      expect(kept.length).toBeLessThan(total / 4);
      // Kept lines keep their order.
      const idx = kept.map((l) => Number(l.line.slice(1)));
      for (let i = 1; i < idx.length; i++) expect(idx[i]!).toBeGreaterThan(idx[i - 1]!);
      const steps = messages(lines).flatMap((m) => (m.type === 'progress' ? [m.step] : []));
      expect(steps).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    },
    TEST_TIMEOUT,
  );

  it(
    'records a spawn failure in exit.json',
    async () => {
      const spec = rawRun(['/nonexistent/trainer-binary', '--flag']);
      await launchShepherd(spec);
      const info = await waitForTrainerInfo(spec.runDir, WAIT_TIMEOUT);
      expect(info).toEqual({ error: expect.stringMatching(/^spawn failed: .*ENOENT/) });
      const exit = await readExit(spec.runDir);
      expect(exit).toMatchObject({ code: null, signal: null, error: expect.stringMatching(/ENOENT/) });
      expect(existsSync(join(spec.runDir, 'trainer.json'))).toBe(false);
      const { lines, exit: tailed } = await tailAll(spec.runDir);
      expect(lines).toEqual([]);
      expect(tailed).toEqual(exit);
    },
    TEST_TIMEOUT,
  );

  it(
    'refuses to reuse a run directory',
    async () => {
      const spec = rawRun([process.execPath, '-e', '']);
      await launch(spec);
      await tailAll(spec.runDir);
      await expect(launchShepherd(spec)).rejects.toThrow(/already used/);
    },
    TEST_TIMEOUT,
  );
});

describe('shepherd output limits and unsafe text', () => {
  it(
    'stores NUL and undecodable bytes as U+FFFD, and a last line `last\\u0000line` is followed by the exit',
    async () => {
      const code =
        `process.stdout.write("a\\u0000b\\n");` +
        `process.stdout.write(Buffer.from([0x78, 0xed, 0xa0, 0x80, 0x79, 0x0a]));` + // x, a UTF-16 surrogate as UTF-8, y
        `process.stderr.write("err\\u0000\\n");` +
        `process.stdout.write("last\\u0000line\\n");`;
      const spec = rawRun([process.execPath, '-e', code]);
      await launch(spec);
      const { lines, exit } = await tailAll(spec.runDir);
      expect(exit.code).toBe(0);
      const R = '\uFFFD';
      const byStream = (s: string) => lines.filter((l) => l.stream === s).map((l) => l.line);
      expect(byStream('stdout')[0]).toBe(`a${R}b`);
      expect(byStream('stdout')[1]).toMatch(/^x\uFFFD+y$/);
      expect(byStream('stdout').at(-1)).toBe(`last${R}line`);
      expect(byStream('stderr')).toEqual([`err${R}`]);
      expect(readFileSync(join(spec.runDir, 'output.jsonl'), 'utf8')).not.toMatch(/\\u0000|\\ud[89a-f]/i);
    },
    TEST_TIMEOUT,
  );

  it(
    'a line that only starts like a protocol message is a log line: rate limited with the others',
    async () => {
      const total = 5_000;
      const code = `for (let i = 0; i < ${total}; i++) console.log('{"type":"progress" junk ' + i);`;
      const spec = rawRun([process.execPath, '-e', code], { maxLinesPerSecond: 100, maxProtocolLinesPerSecond: 100_000 });
      await launch(spec);
      const { lines, exit } = await tailAll(spec.runDir);
      expect(exit.code).toBe(0);
      const kept = lines.filter((l) => l.line.includes(' junk '));
      const dropped = lines
        .flatMap((l) => /^\[trainyard\] dropped (\d+) lines \(rate limit\)$/.exec(l.line)?.[1] ?? [])
        .reduce((a, n) => a + Number(n), 0);
      expect(kept.length).toBeLessThan(total / 4);
      expect(kept.length + dropped).toBe(total);
    },
    TEST_TIMEOUT,
  );

  it(
    'protocol lines have a rate (the newest dropped progress still written) and a total per run',
    async () => {
      const code =
        `for (let i = 1; i <= 1000; i++) console.log(JSON.stringify({ type: "progress", step: i, totalSteps: 1000 }));` +
        `setTimeout(() => { for (let i = 0; i < 50; i++) console.log(JSON.stringify({ type: "phase", phase: "training" })); }, 1200);`;
      const spec = rawRun([process.execPath, '-e', code], { maxProtocolLinesPerSecond: 20, maxProtocolLinesPerTask: 40 });
      await launch(spec);
      const { lines, exit } = await tailAll(spec.runDir);
      expect(exit.code).toBe(0);
      const msgs = messages(lines);
      // The first second's 20, then the newest progress the rate dropped: step 1000, not lost.
      const steps = msgs.flatMap((m) => (m.type === 'progress' ? [m.step] : []));
      expect(steps.slice(0, 20)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(steps.at(-1)).toBe(1000);
      expect(msgs.length).toBeLessThanOrEqual(40);
      const text = lines.map((l) => l.line).join('\n');
      expect(text).toMatch(/\[trainyard\] dropped \d+ protocol lines \(rate limit/);
      expect(text).toMatch(/\[trainyard\] dropped \d+ protocol lines past 40 \(TRAINYARD_LOG_PROTOCOL_LINES_PER_TASK\)/);
    },
    TEST_TIMEOUT,
  );

  it(
    'stores at most maxBytesPerTask of log lines, then one marker says how many were dropped',
    async () => {
      const code = `for (let i = 0; i < 300; i++) console.log(String(i).padStart(100, "."));`; // 100 bytes a line
      const spec = rawRun([process.execPath, '-e', code], { maxBytesPerTask: 10_000, maxLinesPerSecond: 100_000 });
      await launch(spec);
      const { lines, exit } = await tailAll(spec.runDir);
      expect(exit.code).toBe(0);
      const kept = lines.filter((l) => l.line.startsWith('.'));
      expect(kept).toHaveLength(100);
      expect(lines.at(-1)!.line).toBe('[trainyard] dropped 200 log lines past 10000 bytes of output (TRAINYARD_LOG_MAX_BYTES_PER_TASK)');
    },
    TEST_TIMEOUT,
  );
});

describe('RunTailer on hand-written files', () => {
  const rec = (seq: number, line: string) => `${JSON.stringify({ seq, stream: 'stdout', line, t: 1000 + seq })}\n`;

  it(
    'waits for a partially written last line and resolves only after all lines',
    async () => {
      const dir = join(root, `manual-${++counter}`);
      mkdirSync(dir, { recursive: true });
      const out = join(dir, 'output.jsonl');
      const third = rec(3, 'three');
      writeFileSync(out, rec(1, 'one') + rec(2, 'two') + third.slice(0, 10));
      const got: OutputLine[] = [];
      const tailer = new RunTailer(dir, 0, (l) => void got.push(l), { pollMs: 10 });
      cleanups.push(() => tailer.stop());
      tailer.start();
      await waitFor('two lines', () => got.length === 2);
      let resolved = false;
      void tailer.exited.then(() => (resolved = true));
      appendFileSync(out, third.slice(10));
      await waitFor('third line', () => got.length === 3);
      expect(resolved).toBe(false);
      appendFileSync(out, rec(4, 'four'));
      writeFileSync(join(dir, 'exit.json'), JSON.stringify({ code: 0, signal: null, endedAt: 1 }));
      const exit = await withTimeout(tailer.exited, WAIT_TIMEOUT, 'exit');
      expect(exit).toEqual({ code: 0, signal: null, endedAt: 1 });
      expect(got.map((l) => l.line)).toEqual(['one', 'two', 'three', 'four']);
    },
    TEST_TIMEOUT,
  );

  it(
    'awaits onLine in order and rejects exited when onLine throws',
    async () => {
      const dir = join(root, `manual-${++counter}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'output.jsonl'), [1, 2, 3, 4].map((i) => rec(i, `l${i}`)).join(''));
      writeFileSync(join(dir, 'exit.json'), JSON.stringify({ code: 0, signal: null, endedAt: 1 }));
      const seen: number[] = [];
      let inFlight = 0;
      const tailer = new RunTailer(dir, 1, async (l) => {
        expect(inFlight).toBe(0);
        inFlight++;
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
        if (l.seq === 3) throw new Error('store unavailable');
        seen.push(l.seq);
      });
      tailer.start();
      await expect(withTimeout(tailer.exited, WAIT_TIMEOUT, 'exit')).rejects.toThrow('store unavailable');
      expect(seen).toEqual([2]);
      expect(tailer.lastDeliveredSeq).toBe(2);
    },
    TEST_TIMEOUT,
  );
});

describe('proc helpers', () => {
  it('identifies a process by pid and start time', () => {
    const start = readProcessStartTime(process.pid);
    expect(start).toMatch(/^\d+$/);
    expect(isSameProcessAlive(process.pid, start!)).toBe(true);
    expect(isSameProcessAlive(process.pid, `${start}1`)).toBe(false);
    expect(isSameProcessAlive(process.pid, '0')).toBe(false);
    expect(readProcessStartTime(2 ** 22 + 12345)).toBeNull();
  });

  it(
    'does not count a zombie as alive',
    async () => {
      // The background subshell waits until its parent shell has exec'd `sleep` (so the
      // shell cannot reap it), then exits: a child of sleep, which never reaps, so a zombie.
      const script =
        'p=$$; (while [ -d /proc/$p ] && [ "$(cat /proc/$p/comm 2>/dev/null)" != sleep ]; do sleep 0.01; done) & echo $!; exec sleep 60';
      const sh = spawn('/bin/sh', ['-c', script], {
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      cleanups.push(() => sh.kill('SIGKILL'));
      let out = '';
      sh.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const zombie = await waitFor('zombie pid', () => (out.includes('\n') ? Number(out.trim()) : null));
      const stat = await waitFor('zombie state', () => {
        try {
          const text = readFileSync(`/proc/${zombie}/stat`, 'utf8');
          return text.slice(text.lastIndexOf(')') + 2).startsWith('Z') ? text : null;
        } catch {
          return null;
        }
      });
      expect(stat).toBeTruthy();
      const start = readProcessStartTime(zombie);
      expect(start).not.toBeNull();
      expect(isSameProcessAlive(zombie, start!)).toBe(false);
    },
    TEST_TIMEOUT,
  );

  it('refuses to signal pid <= 1 groups and reports a missing group', () => {
    expect(() => signalGroup(1, 'SIGTERM')).toThrow(RangeError);
    expect(() => signalGroup(0, 'SIGTERM')).toThrow(RangeError);
    expect(signalGroup(2 ** 22 + 12345, 'SIGTERM')).toBe(false);
  });
});

describe('standby shepherd', () => {
  /** A standby waiting in its own folder (as the runner keeps one in the runs folder). */
  async function standbyIn(): Promise<{ standby: StandbyShepherd; home: string }> {
    const home = join(root, `standby-${++counter}`);
    mkdirSync(home, { recursive: true });
    const standby = await StandbyShepherd.start(home);
    cleanups.push(() => {
      standby.dispose();
      if (!standby.gone) process.kill(standby.pid, 'SIGKILL');
    });
    return { standby, home };
  }

  it(
    'handed a run, it runs the trainer and records it as a fresh shepherd does',
    async () => {
      const { standby, home } = await standbyIn();
      expect(standby.ready).toBe(true);
      const spec = simulatedRun({ steps: 4, stepMs: 40, logLinesPerStep: 2 }, 2);
      const launched = await launchShepherd(spec, standby);
      expect(launched).toMatchObject({ adopted: true, shepherdPid: standby.pid });
      expect(standby.ready).toBe(false);
      // shepherd.json names it, so recovery counts it as this folder's shepherd.
      expect(JSON.parse(readFileSync(join(spec.runDir, 'shepherd.json'), 'utf8'))).toEqual({
        pid: standby.pid,
        startTime: standby.startTime,
      });
      expect(findShepherds(spec.runDir)).toEqual([standby.pid]);
      const info = await waitForTrainerInfo(spec.runDir, WAIT_TIMEOUT, { shepherdGone: launched.gone });
      if ('error' in info) throw new Error(info.error);
      cleanups.push(() => {
        if (isSameProcessAlive(info.pid, info.startTime)) signalGroup(info.pid, 'SIGKILL');
      });

      const { lines, exit } = await tailAll(spec.runDir);
      expect(exit).toMatchObject({ code: 0, signal: null });
      expect(exit.error).toBeUndefined();
      expectContiguous(lines);
      expect(messages(lines).filter((m) => m.type === 'progress')).toHaveLength(8);
      expect(messages(lines).some((m) => m.type === 'artifact')).toBe(true);
      expect(lines.filter((l) => l.stream === 'stderr' && /^step \d+ log/.test(l.line))).toHaveLength(8);
      expect(readdirSync(spec.runDir).sort()).toEqual(['exit.json', 'launch.json', 'output.jsonl', 'shepherd.json', 'trainer.json']);
      await waitFor('the standby to exit after its run', () => standby.gone);
      expect(findShepherds(spec.runDir)).toEqual([]);
      expect(readdirSync(home)).toEqual([]); // nothing written where it waited
    },
    TEST_TIMEOUT,
  );

  it(
    'whose stdin closes without a line (the service is gone) exits at once and leaves nothing',
    async () => {
      const { standby, home } = await standbyIn();
      // Let it finish starting, so it is really waiting on stdin when the pipe closes.
      await new Promise((r) => setTimeout(r, 500));
      expect(standby.gone).toBe(false);
      standby.dispose();
      await waitFor('the standby to exit', () => standby.gone);
      expect(readdirSync(home)).toEqual([]);

      // A partial line (no newline) before EOF is no line either: it must not take that folder.
      const target = join(root, `case-${++counter}`);
      mkdirSync(target);
      writeFileSync(join(target, 'launch.json'), JSON.stringify({ argv: ['/bin/sh', '-c', 'touch ran'], env: {}, cwd: target }));
      const raw = spawn(process.execPath, [SHEPHERD_PATH, '--standby'], { cwd: home, stdio: ['pipe', 'ignore', 'ignore'] });
      cleanups.push(() => raw.kill('SIGKILL'));
      raw.stdin!.end(target); // no "\n"
      const code = await new Promise((r) => raw.once('exit', (c) => r(c)));
      expect(code).toBe(0);
      expect(readdirSync(target)).toEqual(['launch.json']);
    },
    TEST_TIMEOUT,
  );

  it(
    'a service SIGKILLed with a standby handed a run and one waiting: the first runs on, the second exits',
    async () => {
      const spec = simulatedRun({ steps: 10, stepMs: 30 }, 2);
      const home = join(root, `standby-${++counter}`);
      mkdirSync(home, { recursive: true });
      // A stand-in "service": two standbys, the first handed the run; reports, then idles.
      const { service, first: pids } = await standInService<{ adopted: boolean; a: number; b: number }>(
        'StandbyShepherd, launchShepherd',
        [
          `const a = await StandbyShepherd.start(${JSON.stringify(home)});`,
          `const b = await StandbyShepherd.start(${JSON.stringify(home)});`,
          `const r = await launchShepherd(JSON.parse(process.env.LAUNCH_SPEC), a);`,
          `process.stdout.write(JSON.stringify({ adopted: r.adopted, a: a.pid, b: b.pid }) + '\\n');`,
        ],
        spec,
        'the service to hand over the run',
      );
      expect(pids.adopted).toBe(true);
      const bStart = readProcessStartTime(pids.b);
      for (const pid of [pids.a, pids.b]) {
        cleanups.push(() => {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        });
      }

      const serviceGone = new Promise((r) => service.once('exit', r));
      signalGroup(service.pid!, 'SIGKILL');
      await withTimeout(serviceGone, WAIT_TIMEOUT, 'service exit');

      // The unused standby goes with the service: no orphan.
      await waitFor('the waiting standby to exit', () => bStart === null || !isSameProcessAlive(pids.b, bStart));
      // The one handed the run finishes it.
      const info = await waitFor('trainer.json', () => readTrainerInfo(spec.runDir));
      cleanups.push(() => {
        if (isSameProcessAlive(info.pid, info.startTime)) signalGroup(info.pid, 'SIGKILL');
      });
      const { lines, exit } = await tailAll(spec.runDir);
      expect(exit.code).toBe(0);
      expectContiguous(lines);
      expect(messages(lines).filter((m) => m.type === 'progress')).toHaveLength(20);
      await waitFor('the adopted shepherd to exit', () => !isAlive(pids.a));
      expect(readdirSync(home)).toEqual([]);
    },
    TEST_TIMEOUT,
  );

  it(
    'a standby that dies with the run unread is reported at once, and the folder can be launched again',
    async () => {
      const { standby } = await standbyIn();
      const spec = simulatedRun({ steps: 2, stepMs: 10 }, 1);
      // Stopped, so it cannot read the line it is handed; then killed: it dies with the line unread.
      process.kill(standby.pid, 'SIGSTOP');
      const launched = await launchShepherd(spec, standby);
      expect(launched.adopted).toBe(true);
      process.kill(standby.pid, 'SIGKILL');
      const started = Date.now();
      const info = await waitForTrainerInfo(spec.runDir, WAIT_TIMEOUT, { shepherdGone: launched.gone });
      expect(info).toMatchObject({ shepherdGone: true });
      expect(Date.now() - started).toBeLessThan(WAIT_TIMEOUT / 2);
      expect(existsSync(join(spec.runDir, 'output.jsonl'))).toBe(false);
      expect(findShepherds(spec.runDir)).toEqual([]);
      // Nothing was started: the launch is discarded (shepherd.json with it) and done again.
      expect(await discardUnstartedLaunch(spec.runDir)).toBe(true);
      expect(readdirSync(spec.runDir)).toEqual([]);
      const again = await launch(spec);
      expect(again.pid).toBeGreaterThan(1);
      expect((await tailAll(spec.runDir)).exit.code).toBe(0);
    },
    TEST_TIMEOUT,
  );

  it('shepherd.json counts only for a live shepherd with the same start time', async () => {
    const dir = join(root, `case-${++counter}`);
    mkdirSync(dir, { recursive: true });
    // A live process that is not a shepherd: never this folder's shepherd (recovery may kill those).
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    cleanups.push(() => sleeper.kill('SIGKILL'));
    const sleeperStart = await waitFor('sleep to start', () => readProcessStartTime(sleeper.pid!));
    writeFileSync(join(dir, 'shepherd.json'), JSON.stringify({ pid: sleeper.pid, startTime: sleeperStart }));
    expect(findShepherds(dir)).toEqual([]);
    // A standby, named with its start time: it is; with another start time (a reused pid): not.
    const { standby } = await standbyIn();
    writeFileSync(join(dir, 'shepherd.json'), JSON.stringify({ pid: standby.pid, startTime: standby.startTime }));
    expect(findShepherds(dir)).toEqual([standby.pid]);
    writeFileSync(join(dir, 'shepherd.json'), JSON.stringify({ pid: standby.pid, startTime: `${standby.startTime}1` }));
    expect(findShepherds(dir)).toEqual([]);
    // Torn or absent: nothing.
    writeFileSync(join(dir, 'shepherd.json'), '{"pid": ');
    expect(findShepherds(dir)).toEqual([]);
    expect(await discardUnstartedLaunch(dir)).toBe(false); // no launch.json, but the stale file goes
    expect(existsSync(join(dir, 'shepherd.json'))).toBe(false);
  });
});
