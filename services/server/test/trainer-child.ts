// A trainer run directly as a child process (no service, no shepherd), its output read through
// the service's own protocol parse: for specs of what a trainer does on its own (checkpoint,
// stop, resume).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseTrainerLine, type CheckpointMessage, type ProgressMessage, type TrainerMessage } from '../src/trainer/protocol';

export interface TrainerRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Every output line, stdout and stderr, as "out: …" / "err: …" (for failure messages). */
  lines: string[];
  messages: TrainerMessage[];
}

const running = new Set<ChildProcess>();

/** Ends trainers a failed spec left running (call from afterEach). */
export function killLeftoverTrainers(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

/**
 * Runs a trainer to its end. `onMessage` sees each protocol message as it arrives, with the
 * child, so a spec can signal it at a given step.
 */
export function runTrainer(
  argv: string[],
  env: Record<string, string>,
  onMessage?: (m: TrainerMessage, child: ChildProcess) => void,
): Promise<TrainerRun> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    const child = spawn(cmd!, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env } });
    running.add(child);
    const run: TrainerRun = { code: null, signal: null, lines: [], messages: [] };
    createInterface({ input: child.stdout }).on('line', (line) => {
      run.lines.push(`out: ${line}`);
      const parsed = parseTrainerLine(line);
      if (parsed.kind !== 'message') return;
      run.messages.push(parsed.message);
      onMessage?.(parsed.message, child);
    });
    createInterface({ input: child.stderr }).on('line', (line) => run.lines.push(`err: ${line}`));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      running.delete(child);
      run.code = code;
      run.signal = signal;
      resolve(run);
    });
  });
}

/** Writes a task spec for a trainer into `dir` and returns the trainer's environment for it. */
export function trainerEnv(
  dir: string,
  spec: { model?: string; datasetPath: string; config: Record<string, unknown> },
): Record<string, string> {
  mkdirSync(dir, { recursive: true });
  const outputDir = join(dir, 'output');
  const specPath = join(dir, 'spec.json');
  writeFileSync(specPath, JSON.stringify({ id: 'resume-spec', name: 'resume', model: spec.model ?? 'tiny', outputDir, ...spec }));
  return { TRAINYARD_TASK_SPEC: specPath, TRAINYARD_OUTPUT_DIR: outputDir, TRAINYARD_TASK_ID: 'resume-spec' };
}

export const progressOf = (run: TrainerRun): ProgressMessage[] => run.messages.filter((m): m is ProgressMessage => m.type === 'progress');
export const checkpointsOf = (run: TrainerRun): CheckpointMessage[] =>
  run.messages.filter((m): m is CheckpointMessage => m.type === 'checkpoint');
