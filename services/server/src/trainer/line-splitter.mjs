// @ts-check
// Splitting a trainer's output stream into lines, with a byte cap per line. Pure: the shepherd
// feeds it the chunks it reads and stores the lines. Types are in line-splitter.d.mts.

/**
 * Largest cut point <= max that does not split a UTF-8 character of `buf`.
 * @param {Uint8Array} buf
 * @param {number} max
 */
export function utf8Boundary(buf, max) {
  let i = Math.min(max, buf.length);
  // buf[i] is the first byte dropped; while it is a continuation byte, we'd split a char.
  while (i > 0 && i < buf.length && ((buf[i] ?? 0) & 0xc0) === 0x80) i--;
  return i;
}

/**
 * A splitter of one stream. Lines end at '\n' (a '\r' before it is dropped); a line longer than
 * `maxLineBytes` is cut at a UTF-8 boundary and ends with `… [cut N bytes]`. Memory stays bounded
 * by the cap, however long a line runs.
 * @param {number} maxLineBytes
 */
export function createLineSplitter(maxLineBytes) {
  /** @type {Buffer[]} */
  let parts = [];
  let kept = 0; // bytes held in parts (at most maxLineBytes + 4)
  let total = 0; // bytes of the current line seen so far
  const keepMax = maxLineBytes + 4; // a few extra bytes to find a UTF-8 boundary

  /** @param {Buffer} seg */
  function add(seg) {
    total += seg.length;
    if (kept < keepMax) {
      const take = seg.subarray(0, keepMax - kept);
      parts.push(take);
      kept += take.length;
    }
  }

  /** @returns {string} */
  function endLine() {
    let buf = parts.length === 1 ? /** @type {Buffer} */ (parts[0]) : Buffer.concat(parts);
    let lineTotal = total;
    parts = [];
    kept = 0;
    total = 0;
    // Windows-style line endings: drop the '\r' before '\n' (only if the line wasn't cut).
    if (lineTotal <= keepMax && buf.length > 0 && buf[buf.length - 1] === 0x0d) {
      buf = buf.subarray(0, buf.length - 1);
      lineTotal -= 1;
    }
    if (lineTotal > maxLineBytes) {
      const cut = utf8Boundary(buf, maxLineBytes);
      return `${buf.subarray(0, cut).toString('utf8')}… [cut ${lineTotal - cut} bytes]`;
    }
    return buf.toString('utf8');
  }

  return {
    /**
     * The lines `chunk` completes, in order; a partial last line waits for the next chunk.
     * @param {Buffer} chunk
     * @returns {string[]}
     */
    push(chunk) {
      /** @type {string[]} */
      const lines = [];
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(0x0a, start);
        if (nl < 0) break;
        add(chunk.subarray(start, nl));
        lines.push(endLine());
        start = nl + 1;
      }
      if (start < chunk.length) add(chunk.subarray(start));
      return lines;
    },
    /**
     * At the end of the stream: the last line, if it had no '\n' (null when there is none).
     * @returns {string | null}
     */
    end() {
      return total > 0 ? endLine() : null;
    },
  };
}
