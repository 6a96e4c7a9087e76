// Process helpers built on Linux /proc. A pid alone is not an identity (pids are reused),
// so a trainer is identified by (pid, start time), the start time being field 22 of
// /proc/<pid>/stat (clock ticks since boot). shepherd.mjs carries a copy of
// parseProcStat/readProcessStartTime; keep the two in step.
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcStat {
  /** Field 3: R, S, D, Z (zombie), T, X (dead), ... */
  state: string;
  /** Field 22, as a string: it may exceed 2^53 on a machine with a long uptime. */
  startTime: string;
}

/**
 * Parses the text of /proc/<pid>/stat. Field 2 is `(comm)`, which may itself contain
 * spaces and parentheses, so fields are counted from after the LAST ')'.
 */
export function parseProcStat(text: string): ProcStat | null {
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  // After ") " come fields 3, 4, ...; field N is at index N - 3.
  const fields = text.slice(close + 1).trim().split(/\s+/);
  const state = fields[0];
  const startTime = fields[22 - 3];
  if (!state || !startTime || !/^\d+$/.test(startTime)) return null;
  return { state, startTime };
}

export function readProcStat(pid: number): ProcStat | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  return parseProcStat(text);
}

/** Start time of `pid` (field 22 of /proc/<pid>/stat), or null if there is no such process. */
export function readProcessStartTime(pid: number): string | null {
  return readProcStat(pid)?.startTime ?? null;
}

/**
 * True when `pid` exists, is not a zombie, and started at `startTime`: a pid reused by
 * another process is not mistaken for the one we launched.
 */
export function isSameProcessAlive(pid: number, startTime: string): boolean {
  const stat = readProcStat(pid);
  if (!stat) return false;
  if (stat.state === 'Z' || stat.state === 'X' || stat.state === 'x') return false;
  return stat.startTime === startTime;
}

/**
 * Sends `signal` to the process group led by `pid` (`kill(-pid, sig)`). Returns false when
 * the group no longer exists (ESRCH); other errors (EPERM, bad signal) are thrown.
 */
export function signalGroup(pid: number, signal: NodeJS.Signals | number): boolean {
  // kill(-1) would signal every process we may signal; kill(0) our own group. Never.
  if (!Number.isInteger(pid) || pid <= 1) {
    throw new RangeError(`refusing to signal process group of pid ${pid}`);
  }
  try {
    process.kill(-pid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/**
 * Pids of live shepherds (`node shepherd.mjs <runDir>`) of one run folder, from /proc. A
 * shepherd shows up here from the moment it is spawned, before it has written anything.
 */
export function findShepherds(runDir: string): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const pids: number[] = [];
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const at = argv.findIndex((a) => a.endsWith('shepherd.mjs'));
    if (at < 0 || argv[at + 1] !== runDir) continue;
    const stat = readProcStat(Number(e));
    if (stat && stat.state !== 'Z' && stat.state !== 'X' && stat.state !== 'x') pids.push(Number(e));
  }
  return pids;
}
