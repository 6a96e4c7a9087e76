// @ts-check
// A process's identity on Linux: a pid alone is not one (pids are reused), so a process is
// known by (pid, start time), the start time being field 22 of /proc/<pid>/stat (clock ticks
// since boot). Shared by the shepherd (which records its trainer's) and the service (proc.ts,
// which checks it). Types are in proc-stat.d.mts.
import { readFileSync } from 'node:fs';

/** @typedef {import('./proc-stat.d.mts').ProcStat} ProcStat */

/**
 * Parses the text of /proc/<pid>/stat. Field 2 is `(comm)`, which may itself contain spaces and
 * parentheses, so fields are counted from after the LAST ')'.
 * @param {string} text
 * @returns {ProcStat | null}
 */
export function parseProcStat(text) {
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  // After ") " come fields 3, 4, ...; field N is at index N - 3.
  const fields = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const state = fields[0];
  const startTime = fields[22 - 3];
  if (!state || !startTime || !/^\d+$/.test(startTime)) return null;
  return { state, startTime };
}

/**
 * /proc/<pid>/stat of a process, parsed; null if there is no such process (or not Linux).
 * @param {number} pid
 * @returns {ProcStat | null}
 */
export function readProcStat(pid) {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  let text;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  return parseProcStat(text);
}

/**
 * Start time of `pid` (field 22 of /proc/<pid>/stat), or null if there is no such process.
 * @param {number} pid
 * @returns {string | null}
 */
export function readProcessStartTime(pid) {
  return readProcStat(pid)?.startTime ?? null;
}
