// The one live Slurm cluster of infra/slurm-up.sh is shared by every spec file that uses it, and
// vitest runs spec files in parallel. Those files assert what the cluster's four GPUs do (which job
// runs, which waits) and stop its controller, so they take the cluster in turn: a lock held from a
// file's first hook to its last. The lock is a directory (mkdir is atomic) naming its holder's pid;
// a holder that died is taken over, so a killed run never blocks the next.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const LOCK = join(tmpdir(), 'trainyard-slurm-cluster.lock');

/** Null when the controller answers a ping, else why not. */
function pingError(): string | null {
  try {
    execFileSync('scontrol', ['ping'], { stdio: 'pipe', timeout: 10_000 });
    return null;
  } catch (err) {
    return (err as Error).message.split('\n')[0] ?? 'no answer';
  }
}

/**
 * Why the live cluster cannot be used here, or null when it can: its controller answers, or
 * another spec file holds the cluster (which may have stopped the controller on purpose, as the
 * controller-restart cases do, and starts it again before it lets go; this file takes it after).
 */
export function slurmMissing(): string | null {
  const error = pingError();
  if (error === null || heldByAnother()) return null;
  return `Slurm does not answer here (${error})`;
}

function heldByAnother(): boolean {
  try {
    return Number(readFileSync(join(LOCK, 'pid'), 'utf8')) !== process.pid && holderAlive();
  } catch {
    return false; // no lock, or no pid in it yet
  }
}

function holderAlive(): boolean {
  try {
    const pid = Number(readFileSync(join(LOCK, 'pid'), 'utf8'));
    if (!Number.isInteger(pid) || pid <= 0) return false;
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, someone else's; no pid file yet: the holder is between mkdir and write.
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EPERM' || code === 'ENOENT';
  }
}

/** Waits until this process holds the cluster; returns its release. */
export async function takeSlurmCluster(waitMs = 20 * 60_000): Promise<() => void> {
  const until = Date.now() + waitMs;
  let deadSince: number | null = null;
  for (;;) {
    try {
      mkdirSync(LOCK);
      writeFileSync(join(LOCK, 'pid'), String(process.pid));
      // A controller the last holder restarted may take a moment to answer again.
      const answering = Date.now() + 60_000;
      while (pingError() !== null && Date.now() < answering) await new Promise((r) => setTimeout(r, 500));
      return () => rmSync(LOCK, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (holderAlive()) deadSince = null;
    else if (deadSince === null) deadSince = Date.now();
    // A holder seen dead twice, a second apart, is gone (not one caught between mkdir and its pid).
    else if (Date.now() - deadSince > 1000) rmSync(LOCK, { recursive: true, force: true });
    if (Date.now() > until) throw new Error(`the Slurm cluster stayed taken for ${waitMs} ms (lock ${LOCK})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
