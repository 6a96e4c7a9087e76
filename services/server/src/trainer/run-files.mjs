// @ts-check
// A run folder's file names, and how its files are written: shared by the shepherd (plain Node),
// which writes trainer.json, output.jsonl and exit.json, and the service, which writes
// shepherd.json and launch.json and reads the rest. Types are in run-files.d.mts.
//
//   shepherd.json {pid, startTime} of the standby shepherd handed this run (written by the
//                 service before launch.json; absent when a fresh shepherd was spawned for it)
//   launch.json   what to run (service)
//   trainer.json  {pid, startTime} of the trainer (shepherd, right after spawn)
//   output.jsonl  one {"seq","stream","line","t"} per output line (shepherd)
//   exit.json     {code, signal, endedAt[, error]} (shepherd, after all output)
//   shepherd.log  the shepherd's own problems, if any
import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';

export const RUN_FILES = Object.freeze({
  shepherd: 'shepherd.json',
  launch: 'launch.json',
  trainer: 'trainer.json',
  output: 'output.jsonl',
  exit: 'exit.json',
  shepherdLog: 'shepherd.log',
});

/** The shepherd's argument that makes it a standby, waiting for its run folder on stdin. */
export const STANDBY_FLAG = '--standby';

// Run folders hold a trainer's command line, environment and output: readable by the service's
// user only. Modes are set explicitly (chmod after mkdir, fchmod after open), whatever the umask.
export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/**
 * Opens a run file with mode 0600 (set again with fchmod: the umask may have taken bits away).
 * @param {string} file
 * @param {'w' | 'a'} flags
 * @returns {number}
 */
export function openPrivate(file, flags) {
  const fd = openSync(file, flags, PRIVATE_FILE_MODE);
  try {
    fchmodSync(fd, PRIVATE_FILE_MODE);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return fd;
}

/**
 * Writes all of `buf` to `fd` (writeSync may write less than asked).
 * @param {number} fd
 * @param {Uint8Array} buf
 */
export function writeAll(fd, buf) {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

/**
 * The temp file a file is written to before it is renamed into place (per process, so two
 * writers never share one).
 * @param {string} file
 */
export function tempPathFor(file) {
  return `${file}.tmp-${process.pid}`;
}

/**
 * One JSON file's content: the value on one line. A reader that finds a file without its
 * newline, or that does not parse, treats it as absent (files are renamed into place whole).
 * @param {unknown} value
 */
export function jsonFileText(value) {
  return `${JSON.stringify(value)}\n`;
}

/**
 * Writes `value` as JSON to `file` atomically: private temp file, fsync, rename.
 * @param {string} file
 * @param {unknown} value
 */
export function writeJsonAtomicSync(file, value) {
  const tmp = tempPathFor(file);
  const fd = openPrivate(tmp, 'w');
  try {
    writeAll(fd, Buffer.from(jsonFileText(value)));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}
