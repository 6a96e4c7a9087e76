// Types of run-files.mjs (plain JavaScript, shared with the trainer shepherd).

/** launch.json: what the shepherd runs, and the limits on the output it stores (absent: no limit). */
export interface LaunchFile {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  maxLineBytes: number;
  maxLinesPerSecond: number;
  maxProtocolLinesPerSecond?: number;
  maxProtocolLinesPerTask?: number;
  maxBytesPerTask?: number;
}

/** File names of a run folder. */
export const RUN_FILES: Readonly<{
  shepherd: 'shepherd.json';
  launch: 'launch.json';
  trainer: 'trainer.json';
  output: 'output.jsonl';
  exit: 'exit.json';
  shepherdLog: 'shepherd.log';
}>;
/** The shepherd's argument that makes it a standby, waiting for its run folder on stdin. */
export const STANDBY_FLAG: '--standby';
export const PRIVATE_DIR_MODE: number;
export const PRIVATE_FILE_MODE: number;
/** Opens a run file with mode 0600, whatever the umask. */
export function openPrivate(file: string, flags: 'w' | 'a'): number;
/** Writes all of `buf` to `fd`. */
export function writeAll(fd: number, buf: Uint8Array): void;
/** The temp file a file is written to before it is renamed into place. */
export function tempPathFor(file: string): string;
/** One JSON file's content: the value on one line. */
export function jsonFileText(value: unknown): string;
/** Writes `value` as JSON to `file` atomically: private temp file, fsync, rename. */
export function writeJsonAtomicSync(file: string, value: unknown): void;
