// @ts-check
// The limits on what a run's output may store, applied line by line as the shepherd reads it.
// Pure: no IO and no clock (callers pass `now`); the one timer it needs, to end a second in
// which lines were held back or dropped, is the caller's (`timer`). Types are in
// output-limits.d.mts.
//
// Plain log lines: a rate per second, and a total of bytes per run past which they are dropped.
// Protocol lines (a full parse decides, so a junk line that only starts like one is a plain
// line): their own rate and total, and not the byte total (they carry the run's progress and
// artifacts). A progress message the rate drops is kept until the second ends and then written,
// if no newer one came, so the last progress of a burst is never lost.
import { parseTrainerLine } from './protocol-parse.mjs';

/** @typedef {import('./output-limits.d.mts').OutputEntry} OutputEntry */
/** @typedef {import('./output-limits.d.mts').OutputLimits} OutputLimits */
/** @typedef {import('./output-limits.d.mts').WindowTimer} WindowTimer */

const WINDOW_MS = 1000;

/**
 * @param {OutputLimits} limits
 * @param {WindowTimer} timer
 */
export function createOutputLimiter(limits, timer) {
  const { maxLinesPerSecond, maxProtocolLinesPerSecond, maxProtocolLinesPerTask, maxBytesPerTask } = limits;
  let windowStart = 0;
  let windowCount = 0;
  let dropped = 0;
  let protocolWindowCount = 0;
  let protocolDropped = 0;
  let protocolTotal = 0;
  let protocolOverTotal = 0;
  /** @type {string | null} */
  let pendingProgress = null;
  let bytesStored = 0;
  let overBytes = 0;
  let armed = false;

  /**
   * @param {'stdout' | 'stderr'} stream
   * @param {string} line
   * @returns {OutputEntry}
   */
  const entry = (stream, line) => ({ stream, line });

  /** @param {number} now */
  function arm(now) {
    if (armed) return;
    armed = true;
    timer.arm(Math.max(0, windowStart + WINDOW_MS - now));
  }

  /**
   * Ends the current second: the progress held back, and one marker line per kind of line the
   * rate dropped. Called by the caller's timer, and at the end of the run.
   * @param {number} now
   * @returns {OutputEntry[]}
   */
  function roll(now) {
    /** @type {OutputEntry[]} */
    const out = [];
    if (pendingProgress !== null) {
      protocolTotal += 1;
      out.push(entry('stdout', pendingProgress));
      pendingProgress = null;
    }
    if (dropped > 0) {
      out.push(entry('stderr', `[trainyard] dropped ${dropped} lines (rate limit)`));
      dropped = 0;
    }
    if (protocolDropped > 0) {
      out.push(
        entry('stderr', `[trainyard] dropped ${protocolDropped} protocol lines (rate limit, TRAINYARD_LOG_PROTOCOL_LINES_PER_SECOND)`),
      );
      protocolDropped = 0;
    }
    windowStart = now;
    windowCount = 0;
    protocolWindowCount = 0;
    if (armed) {
      armed = false;
      timer.disarm();
    }
    return out;
  }

  /**
   * At the end of the run: how many lines the totals dropped, one marker line each.
   * @returns {OutputEntry[]}
   */
  function totals() {
    /** @type {OutputEntry[]} */
    const out = [];
    if (overBytes > 0)
      out.push(
        entry(
          'stderr',
          `[trainyard] dropped ${overBytes} log lines past ${maxBytesPerTask} bytes of output (TRAINYARD_LOG_MAX_BYTES_PER_TASK)`,
        ),
      );
    if (protocolOverTotal > 0)
      out.push(
        entry(
          'stderr',
          `[trainyard] dropped ${protocolOverTotal} protocol lines past ${maxProtocolLinesPerTask} (TRAINYARD_LOG_PROTOCOL_LINES_PER_TASK)`,
        ),
      );
    overBytes = 0;
    protocolOverTotal = 0;
    return out;
  }

  /**
   * One line read from the trainer: what to store now (possibly nothing, possibly marker lines
   * or the end of the last second first).
   * @param {'stdout' | 'stderr'} stream
   * @param {string} line
   * @param {number} now
   * @returns {OutputEntry[]}
   */
  function accept(stream, line, now) {
    /** @type {OutputEntry[]} */
    const out = [];
    if (now - windowStart >= WINDOW_MS) out.push(...roll(now));
    const parsed = stream === 'stdout' ? parseTrainerLine(line) : null;
    if (parsed?.kind === 'message') {
      if (protocolTotal >= maxProtocolLinesPerTask) {
        if (protocolOverTotal === 0)
          out.push(
            entry(
              'stderr',
              `[trainyard] ${maxProtocolLinesPerTask} protocol lines reached (TRAINYARD_LOG_PROTOCOL_LINES_PER_TASK): further ones are dropped`,
            ),
          );
        protocolOverTotal += 1;
        return out;
      }
      if (protocolWindowCount < maxProtocolLinesPerSecond) {
        protocolWindowCount += 1;
        protocolTotal += 1;
        out.push(entry(stream, line));
        return out;
      }
      if (parsed.message.type === 'progress') {
        if (pendingProgress !== null) protocolDropped += 1;
        pendingProgress = line;
      } else {
        protocolDropped += 1;
      }
      arm(now);
      return out;
    }
    const bytes = Buffer.byteLength(line);
    if (overBytes > 0 || bytesStored + bytes > maxBytesPerTask) {
      if (overBytes === 0)
        out.push(
          entry(
            'stderr',
            `[trainyard] ${maxBytesPerTask} bytes of output reached (TRAINYARD_LOG_MAX_BYTES_PER_TASK): further log lines are dropped`,
          ),
        );
      overBytes += 1;
      return out;
    }
    if (windowCount < maxLinesPerSecond) {
      windowCount += 1;
      bytesStored += bytes;
      out.push(entry(stream, line));
      return out;
    }
    dropped += 1;
    arm(now);
    return out;
  }

  return { accept, roll, totals };
}
