// Process helpers built on Linux /proc. A pid alone is not an identity (pids are reused),
// so a trainer is identified by (pid, start time); reading the start time is proc-stat.mjs's,
// shared with the shepherd.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { readProcStat, type ProcStat } from './proc-stat.mjs';
import { RUN_FILES, STANDBY_FLAG } from './run-files.mjs';

export { parseProcStat, readProcStat, readProcessStartTime } from './proc-stat.mjs';

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
    raw = JSON.parse(readFileSync(join(runDir, RUN_FILES.shepherd), 'utf8')) as typeof raw;
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
    if (!ours && argv[at + 1] === STANDBY_FLAG) {
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
