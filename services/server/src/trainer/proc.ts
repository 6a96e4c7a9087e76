// Process helpers built on Linux /proc. A pid alone is not an identity (pids are reused),
// so a trainer is identified by (pid, start time), the start time being field 22 of
// /proc/<pid>/stat (clock ticks since boot). shepherd.mjs carries a copy of
// parseProcStat/readProcessStartTime; keep the two in step.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

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
  const fields = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
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

/** The run folder's record of the standby shepherd the runner handed it to (see run.ts). */
export const SHEPHERD_FILE = 'shepherd.json';

function isShepherdArgv(argv: string[]): number {
  return argv.findIndex((a) => a.endsWith('shepherd.mjs'));
}

function readArgv(pid: number | string): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return null;
  }
}

function isLive(stat: ProcStat | null): stat is ProcStat {
  return stat !== null && stat.state !== 'Z' && stat.state !== 'X' && stat.state !== 'x';
}

/**
 * The live shepherd named by the folder's shepherd.json, if any: same pid AND same start time
 * (a reused pid is not it) AND a shepherd's argv (after a reboot a pid and start time could
 * match some unrelated process; recovery may kill what it finds here, so be sure).
 */
function shepherdOfFile(runDir: string): number | null {
  let raw: { pid?: unknown; startTime?: unknown };
  try {
    raw = JSON.parse(readFileSync(join(runDir, SHEPHERD_FILE), 'utf8')) as typeof raw;
  } catch {
    return null; // absent, or torn (it is renamed into place whole, so: never written)
  }
  if (typeof raw.pid !== 'number' || typeof raw.startTime !== 'string') return null;
  if (!isSameProcessAlive(raw.pid, raw.startTime)) return null;
  const argv = readArgv(raw.pid);
  return argv && isShepherdArgv(argv) >= 0 ? raw.pid : null;
}

/**
 * Pids of live shepherds of one run folder, from /proc: a fresh one (`node shepherd.mjs
 * <runDir>`) shows up from the moment it is spawned, before it has written anything; a standby
 * (`node shepherd.mjs --standby`) handed this folder shows up through the folder's
 * shepherd.json, written before it was handed the folder, and through its cwd once it took it.
 */
export function findShepherds(runDir: string): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const pids = new Set<number>();
  const named = shepherdOfFile(runDir);
  if (named !== null) pids.add(named);
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const argv = readArgv(e);
    if (!argv) continue;
    const at = isShepherdArgv(argv);
    if (at < 0) continue;
    let ours = argv[at + 1] === runDir;
    if (!ours && argv[at + 1] === '--standby') {
      try {
        ours = readlinkSync(`/proc/${e}/cwd`) === runDir;
      } catch {
        ours = false;
      }
    }
    if (ours && isLive(readProcStat(Number(e)))) pids.add(Number(e));
  }
  return [...pids];
}
