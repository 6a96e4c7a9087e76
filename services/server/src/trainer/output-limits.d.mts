// Types of output-limits.mjs (plain JavaScript, shared with the trainer shepherd).

/** A line to store, in order. */
export interface OutputEntry {
  stream: 'stdout' | 'stderr';
  line: string;
}

/** Each a positive number; Infinity for no limit. */
export interface OutputLimits {
  maxLinesPerSecond: number;
  maxProtocolLinesPerSecond: number;
  maxProtocolLinesPerTask: number;
  maxBytesPerTask: number;
}

/** The caller's timer: `arm` asks for a call of `roll` after `delayMs`; `disarm` cancels it. */
export interface WindowTimer {
  arm(delayMs: number): void;
  disarm(): void;
}

export interface OutputLimiter {
  /** One line read from the trainer: what to store now (possibly nothing, or marker lines first). */
  accept(stream: 'stdout' | 'stderr', line: string, now: number): OutputEntry[];
  /** Ends the current second: the progress held back and the rate's marker lines. */
  roll(now: number): OutputEntry[];
  /** At the end of the run: one marker line per total that dropped lines. */
  totals(): OutputEntry[];
}

export function createOutputLimiter(limits: OutputLimits, timer: WindowTimer): OutputLimiter;
