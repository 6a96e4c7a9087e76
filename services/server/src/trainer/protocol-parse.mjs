// @ts-check
// Parsing one line of trainer stdout: a protocol message or a plain log line. Pure, no imports:
// the shepherd (plain Node) decides with it which lines are protocol (rate limited apart from
// log lines), and the service (protocol.ts) with it what each line means, so a line that only
// looks like a message is a log line to both. Types are in protocol-parse.d.mts.
//
// A trainer prints one JSON object per stdout line; every other line is a plain log line.
//   {"type":"phase","phase":"training"}
//   {"type":"progress","epoch":1,"totalEpochs":3,"step":10,"totalSteps":300,"loss":1.23,"learningRate":0.0002}
//   {"type":"artifact","path":"/abs/path/to/adapter"}
//   {"type":"checkpoint","path":"/abs/path/to/checkpoints/step-50","step":50}

/** @typedef {import('./protocol-parse.d.mts').ParsedLine} ParsedLine */
/** @typedef {import('./protocol-parse.d.mts').ProgressMessage} ProgressMessage */

/** @type {ParsedLine} */
const LOG = Object.freeze({ kind: 'log' });

const PROGRESS_FIELDS = /** @type {const} */ (['epoch', 'totalEpochs', 'step', 'totalSteps', 'loss', 'learningRate']);

/** Longest line even tried as JSON; protocol lines are tiny (artifact paths aside). */
const MAX_MESSAGE_CHARS = 64 * 1024;

/** Longest checkpoint path: Linux's PATH_MAX, so any path a trainer could have written fits. */
export const MAX_CHECKPOINT_PATH_CHARS = 4096;

/**
 * Classifies one line of trainer stdout. Anything that is not a well-formed protocol message
 * (bad JSON, unknown type, invalid numbers) is a log line; this never throws.
 * @param {string} line
 * @returns {ParsedLine}
 */
export function parseTrainerLine(line) {
  const text = line.trim();
  if (text.length < 2 || text.length > MAX_MESSAGE_CHARS || text[0] !== '{') return LOG;
  /** @type {unknown} */
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    return LOG;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return LOG;
  const obj = /** @type {Record<string, unknown>} */ (value);
  switch (obj.type) {
    case 'phase':
      return obj.phase === 'training' ? { kind: 'message', message: { type: 'phase', phase: 'training' } } : LOG;
    case 'progress': {
      /** @type {ProgressMessage} */
      const message = { type: 'progress' };
      for (const field of PROGRESS_FIELDS) {
        const v = obj[field];
        if (v === undefined) continue;
        if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) return LOG;
        message[field] = v;
      }
      if (message.step !== undefined && message.totalSteps !== undefined && message.step > message.totalSteps) return LOG;
      return { kind: 'message', message };
    }
    case 'artifact':
      return typeof obj.path === 'string' && obj.path.length > 0 ? { kind: 'message', message: { type: 'artifact', path: obj.path } } : LOG;
    case 'checkpoint': {
      // Absolute: the service keeps it for a later attempt, which may run in another folder.
      const { path, step } = obj;
      if (typeof path !== 'string' || path.length > MAX_CHECKPOINT_PATH_CHARS || path[0] !== '/') return LOG;
      if (typeof step !== 'number' || !Number.isSafeInteger(step) || step < 0) return LOG;
      return { kind: 'message', message: { type: 'checkpoint', path, step } };
    }
    default:
      return LOG;
  }
}
