// The output of a followed run, buffered and stored in batches, in order.
import type { LogLine } from '@trainyard/store';

export const LOG_FLUSH_MS = 100;
const LOG_FLUSH_LINES = 500;

export interface OutputBuffer {
  /** Buffer a line; stores the batch when it is large or old enough. */
  push(line: LogLine): Promise<void>;
  /** Store everything buffered so far, including what a timer flush already took. */
  flush(): Promise<void>;
  /** The periodic flush: flush(), unless held. */
  timerFlush(): Promise<void>;
  /** Wait for flushes under way (without starting one). */
  settled(): Promise<void>;
  /** Take the lines not stored yet (to store them with a command). */
  take(): LogLine[];
  /**
   * While held, lines are stored only by an explicit flush() or taken: neither a timer nor a
   * full buffer stores them (a line must not be stored before the event it reports).
   */
  hold(held: boolean): void;
}

/** `store` stores a batch (never throws for a refused line: see Runner.storeLines). */
export function outputBuffer(store: (lines: LogLine[]) => Promise<void>): OutputBuffer {
  let buffer: LogLine[] = [];
  let lastFlush = Date.now();
  let held = false;
  // Flushes run one after another: `await flush()` then means every line buffered so far is
  // stored, even those a timer flush already took (the failure detail reads them right after).
  let flushing: Promise<void> = Promise.resolve();
  const flush = (): Promise<void> => {
    flushing = flushing
      .catch(() => {})
      .then(async () => {
        if (!buffer.length) return;
        const lines = buffer;
        buffer = [];
        lastFlush = Date.now();
        await store(lines);
      });
    return flushing;
  };
  return {
    flush,
    async push(line) {
      buffer.push(line);
      if (!held && (buffer.length >= LOG_FLUSH_LINES || Date.now() - lastFlush > LOG_FLUSH_MS * 5)) await flush();
    },
    hold(on) {
      held = on;
    },
    timerFlush: () => (held ? flushing : flush()),
    settled: () => flushing.catch(() => {}),
    take() {
      const lines = buffer;
      buffer = [];
      return lines;
    },
  };
}
