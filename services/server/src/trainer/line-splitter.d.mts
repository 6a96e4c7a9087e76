// Types of line-splitter.mjs (plain JavaScript, shared with the trainer shepherd).

export interface LineSplitter {
  /** The lines `chunk` completes, in order; a partial last line waits for the next chunk. */
  push(chunk: Buffer): string[];
  /** At the end of the stream: the last line, if it had no '\n' (null when there is none). */
  end(): string | null;
}

/** Largest cut point <= max that does not split a UTF-8 character of `buf`. */
export function utf8Boundary(buf: Uint8Array, max: number): number;
/** A splitter of one stream: lines end at '\n', longer than `maxLineBytes` they are cut. */
export function createLineSplitter(maxLineBytes: number): LineSplitter;
