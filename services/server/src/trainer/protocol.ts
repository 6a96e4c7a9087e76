// The trainer <-> service wire protocol. Pure: no IO, no clocks (callers pass `now`).
//
// A trainer prints one JSON object per stdout line; every other line is a plain log line.
//   {"type":"phase","phase":"training"}
//   {"type":"progress","epoch":1,"totalEpochs":3,"step":10,"totalSteps":300,"loss":1.23}
//   {"type":"artifact","path":"/abs/path/to/adapter"}
// `epoch` is the 1-based index of the current epoch, `step` the global optimizer step.

export interface PhaseMessage {
  type: 'phase';
  phase: 'training';
}

export interface ProgressMessage {
  type: 'progress';
  epoch?: number;
  totalEpochs?: number;
  step?: number;
  totalSteps?: number;
  loss?: number;
}

export interface ArtifactMessage {
  type: 'artifact';
  path: string;
}

export type TrainerMessage = PhaseMessage | ProgressMessage | ArtifactMessage;

export type ParsedLine = { kind: 'message'; message: TrainerMessage } | { kind: 'log' };

const LOG: ParsedLine = { kind: 'log' };

const PROGRESS_FIELDS = ['epoch', 'totalEpochs', 'step', 'totalSteps', 'loss'] as const;

/** Longest line we even try to parse as JSON; protocol lines are tiny (artifact paths aside). */
const MAX_MESSAGE_CHARS = 64 * 1024;

/**
 * Classifies one line of trainer stdout. Anything that is not a well-formed protocol
 * message (bad JSON, unknown type, invalid numbers) is a log line; this never throws.
 */
export function parseTrainerLine(line: string): ParsedLine {
  const text = line.trim();
  if (text.length < 2 || text.length > MAX_MESSAGE_CHARS || text[0] !== '{') return LOG;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return LOG;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return LOG;
  const obj = value as Record<string, unknown>;
  switch (obj.type) {
    case 'phase':
      return obj.phase === 'training'
        ? { kind: 'message', message: { type: 'phase', phase: 'training' } }
        : LOG;
    case 'progress': {
      const message: ProgressMessage = { type: 'progress' };
      for (const field of PROGRESS_FIELDS) {
        const v = obj[field];
        if (v === undefined) continue;
        if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) return LOG;
        message[field] = v;
      }
      if (
        message.step !== undefined &&
        message.totalSteps !== undefined &&
        message.step > message.totalSteps
      ) {
        return LOG;
      }
      return { kind: 'message', message };
    }
    case 'artifact':
      return typeof obj.path === 'string' && obj.path.length > 0
        ? { kind: 'message', message: { type: 'artifact', path: obj.path } }
        : LOG;
    default:
      return LOG;
  }
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
} {
  return {
    epoch: p.epoch ?? null,
    totalEpochs: p.totalEpochs ?? null,
    step: p.step ?? null,
    totalSteps: p.totalSteps ?? null,
    loss: p.loss ?? null,
  };
}

export const DEFAULT_PROGRESS_INTERVAL_MS = 2000;

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
