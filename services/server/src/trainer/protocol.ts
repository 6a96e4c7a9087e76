// The trainer <-> service wire protocol. Pure: no IO, no clocks (callers pass `now`).
//
// A trainer prints one JSON object per stdout line; every other line is a plain log line.
//   {"type":"phase","phase":"training"}
//   {"type":"progress","epoch":1,"totalEpochs":3,"step":10,"totalSteps":300,"loss":1.23,"learningRate":0.0002}
//   {"type":"artifact","path":"/abs/path/to/adapter"}
//   {"type":"checkpoint","path":"/abs/path/to/checkpoints/step-50","step":50}
// `epoch` is the 1-based index of the current epoch, `step` the global optimizer step.
// The parse itself lives in protocol-parse.mjs, shared with the shepherd (plain Node).
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { DEFAULT_PROGRESS_INTERVAL_MS } from './defaults.mjs';

export { parseTrainerLine } from './protocol-parse.mjs';
export type { CheckpointMessage, ProgressMessage, TrainerMessage } from './protocol-parse.mjs';
import type { RunObservation } from '@trainyard/domain';
import { MAX_CHECKPOINT_PATH_CHARS, parseTrainerLine } from './protocol-parse.mjs';
import type { OutputLine } from './run-folder';
import type { CheckpointMessage, ProgressMessage } from './protocol-parse.mjs';

export interface ArtifactLimits {
  /** Artifacts one task may record. */
  maxPerTask: number;
  /** Longest path, in characters, as reported and as resolved. */
  maxPathChars: number;
}

export type ArtifactVerdict = { ok: true; path: string } | { ok: false; reason: string };

/**
 * Whether an artifact a trainer reported may be recorded, and as which path. A relative path is
 * taken inside the task's output folder; the resolved path must be that folder or inside it
 * (`..` escapes and absolute paths elsewhere are refused), no longer than the limit, and the task
 * must have recorded fewer than the limit's artifacts so far. Lexical: the path is only recorded,
 * never opened, by the service.
 */
export function checkArtifact(path: string, outputDir: string, recordedCount: number, limits: ArtifactLimits): ArtifactVerdict {
  if (recordedCount >= limits.maxPerTask)
    return { ok: false, reason: `the task already has ${recordedCount} artifacts, the most allowed (TRAINYARD_ARTIFACTS_MAX_PER_TASK)` };
  if (path.length > limits.maxPathChars)
    return {
      ok: false,
      reason: `its path is ${path.length} characters long, over the limit of ${limits.maxPathChars} (TRAINYARD_ARTIFACT_PATH_MAX)`,
    };
  if (unsafeChars(path)) return { ok: false, reason: 'its path contains control characters or is not valid Unicode' };
  const root = resolve(outputDir);
  const resolved = resolve(root, path);
  if (resolved.length > limits.maxPathChars)
    return { ok: false, reason: `its resolved path is over the limit of ${limits.maxPathChars} characters (TRAINYARD_ARTIFACT_PATH_MAX)` };
  if (!inside(root, resolved)) return { ok: false, reason: `it is outside the task's output folder ${root}` };
  return { ok: true, path: resolved };
}

export type CheckpointVerdict = { ok: true; path: string; step: number } | { ok: false; reason: string };

/**
 * Whether a checkpoint a trainer reported may be kept for the task's next attempt
 * (`TRAINYARD_RESUME_FROM`), and as which path. The artifact rules: the parse already made the
 * path absolute and at most MAX_CHECKPOINT_PATH_CHARS long; here it must be free of control
 * characters and, `..` resolved, be the task's output folder or inside it, so what a later attempt
 * is handed is the task's own. Lexical: the service never opens it.
 */
export function checkCheckpoint(message: CheckpointMessage, outputDir: string): CheckpointVerdict {
  const { path, step } = message;
  if (path.length > MAX_CHECKPOINT_PATH_CHARS)
    return { ok: false, reason: `its path is ${path.length} characters long, over the limit of ${MAX_CHECKPOINT_PATH_CHARS}` };
  if (!isAbsolute(path)) return { ok: false, reason: 'its path is not absolute' };
  if (unsafeChars(path)) return { ok: false, reason: 'its path contains control characters or is not valid Unicode' };
  const root = resolve(outputDir);
  const resolved = resolve(path);
  if (!inside(root, resolved)) return { ok: false, reason: `it is outside the task's output folder ${root}` };
  return { ok: true, path: resolved, step };
}

function unsafeChars(path: string): boolean {
  return /[\u0000-\u001f\u007f]|\p{Cs}/u.test(path);
}

/** Whether `resolved` is `root` or below it (both resolved, lexically). */
function inside(root: string, resolved: string): boolean {
  const rel = relative(root, resolved);
  return !(rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel));
}

/** Percent done from a progress report: the domain's rule, so the bar and the record agree. */
export { progressPercent } from '@trainyard/domain';

/** A progress message in the shape of the `ProgressRecorded` event data (absent → null). */
export function progressRecord(p: Omit<ProgressMessage, 'type'>): {
  epoch: number | null;
  totalEpochs: number | null;
  step: number | null;
  totalSteps: number | null;
  loss: number | null;
  learningRate: number | null;
} {
  return {
    epoch: p.epoch ?? null,
    totalEpochs: p.totalEpochs ?? null,
    step: p.step ?? null,
    totalSteps: p.totalSteps ?? null,
    loss: p.loss ?? null,
    learningRate: p.learningRate ?? null,
  };
}

/**
 * Decides which progress reports become durable events, so the event log does not get
 * one event per step. `offer` returns true for: the first report, a report whose epoch
 * differs from the last recorded one, a report where step reached totalSteps, or any
 * report at least `intervalMs` after the last recorded one. A true answer counts as
 * recorded.
 */
export class ProgressThrottle {
  readonly intervalMs: number;
  private lastAt: number | null = null;
  private lastEpoch: number | undefined = undefined;

  constructor(intervalMs: number = DEFAULT_PROGRESS_INTERVAL_MS) {
    if (!Number.isFinite(intervalMs) || intervalMs < 0) {
      throw new RangeError(`intervalMs must be a non-negative number, got ${intervalMs}`);
    }
    this.intervalMs = intervalMs;
  }

  offer(progress: Omit<ProgressMessage, 'type'>, now: number): boolean {
    if (!this.shouldRecord(progress, now)) return false;
    this.lastAt = now;
    this.lastEpoch = progress.epoch;
    return true;
  }

  /** Forget what was recorded: the next offer is recorded (e.g. after a re-attach). */
  reset(): void {
    this.lastAt = null;
    this.lastEpoch = undefined;
  }

  private shouldRecord(p: Omit<ProgressMessage, 'type'>, now: number): boolean {
    if (this.lastAt === null) return true;
    if (p.epoch !== undefined && p.epoch !== this.lastEpoch) return true;
    if (p.step !== undefined && p.totalSteps !== undefined && p.step >= p.totalSteps) return true;
    return now - this.lastAt >= this.intervalMs;
  }
}

/**
 * One line of a trainer's output as the run decider's observation, the same for a local run and
 * a Slurm job: a protocol message parsed, progress throttled, an artifact and a checkpoint checked
 * against the task's output folder. A checkpoint outside it is dropped from the observation and
 * its reason returned, for the caller to log.
 */
export function observeLine(
  local: OutputLine,
  ctx: { seqBase: number; throttle: ProgressThrottle; outputDir: string; artifactsSoFar: number; limits: ArtifactLimits },
): { obs: Extract<RunObservation, { type: 'line' }>; refusedCheckpoint: string | null } {
  const line = { ...local, seq: local.seq + ctx.seqBase };
  const parsed = line.stream === 'stdout' ? parseTrainerLine(line.line) : ({ kind: 'log' } as const);
  const obs: Extract<RunObservation, { type: 'line' }> = { type: 'line', line };
  let refusedCheckpoint: string | null = null;
  if (parsed.kind === 'message') {
    const m = parsed.message;
    obs.message = m;
    if (m.type === 'progress') obs.progressDue = ctx.throttle.offer(m, line.t);
    if (m.type === 'artifact') obs.artifact = checkArtifact(m.path, ctx.outputDir, ctx.artifactsSoFar, ctx.limits);
    if (m.type === 'checkpoint') {
      // Only a checkpoint inside the task's own output folder is handed to a later attempt.
      const verdict = checkCheckpoint(m, ctx.outputDir);
      if (verdict.ok) obs.message = { type: 'checkpoint', path: verdict.path, step: verdict.step };
      else {
        delete obs.message;
        refusedCheckpoint = verdict.reason;
      }
    }
  }
  return { obs, refusedCheckpoint };
}
