// @ts-check
// Text the database will store. Postgres refuses U+0000 in text and in jsonb, and jsonb refuses a
// lone (unpaired) UTF-16 surrogate; one such character in a trainer's line or an error message
// made a whole insert fail. Both are replaced with U+FFFD, the Unicode replacement character.
// Plain JavaScript with no imports, so the trainer shepherd (plain Node, no TypeScript loader)
// uses the same rule as the store; types are in safe-text.d.mts.

const REPLACEMENT = '\uFFFD';
/** NUL, or a surrogate half that is not part of a pair. */
const UNSAFE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
/** In JSON text: an escaped NUL or surrogate (JSON.stringify escapes lone surrogates and NUL). */
const UNSAFE_ESCAPE = /\\u(?:0000|[dD][89a-fA-F])/;

/**
 * `text` with NUL and lone surrogates replaced by U+FFFD (the same string when there are none).
 * @param {string} text
 * @returns {string}
 */
export function safeText(text) {
  UNSAFE.lastIndex = 0;
  return UNSAFE.test(text) ? text.replace(UNSAFE, REPLACEMENT) : text;
}

/**
 * `value` with every string in it (keys included) made safe by safeText; values without any
 * unsafe string come back as they are.
 * @template T
 * @param {T} value
 * @returns {T}
 */
export function safeValue(value) {
  if (typeof value === 'string') return /** @type {T} */ (/** @type {unknown} */ (safeText(value)));
  if (Array.isArray(value)) return /** @type {T} */ (/** @type {unknown} */ (value.map(safeValue)));
  if (value !== null && typeof value === 'object') {
    const toJSON = /** @type {{ toJSON?: unknown }} */ (value).toJSON;
    if (typeof toJSON === 'function') return safeValue(toJSON.call(value));
    /** @type {Record<string, unknown>} */
    const out = {};
    for (const [k, v] of Object.entries(value)) out[safeText(k)] = safeValue(v);
    return /** @type {T} */ (/** @type {unknown} */ (out));
  }
  return value;
}

/**
 * JSON.stringify(value), with every string made safe: what a jsonb column accepts. The usual
 * case (nothing to replace) costs one stringify and one scan of its text.
 * @param {unknown} value
 * @returns {string}
 */
export function safeJson(value) {
  return safeJsonOf(value).json;
}

/**
 * safeJson's text with the value it stands for: `value` itself when nothing was replaced, so a
 * writer can hand back what it stored without reading it back.
 * @template T
 * @param {T} value
 * @returns {{ json: string, value: T }}
 */
export function safeJsonOf(value) {
  const json = JSON.stringify(value);
  if (!UNSAFE_ESCAPE.test(json)) return { json, value };
  const safe = safeValue(value);
  return { json: JSON.stringify(safe), value: safe };
}
