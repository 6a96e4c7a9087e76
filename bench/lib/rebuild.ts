// `npm run rebuild -- --json` run as a child process against a benchmark's storage: the check
// that a generated or recorded history folds to exactly the read models it has.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { processMemory } from './common';
import { getServerRoot } from './server';

export interface RebuildResult {
  ok: boolean;
  exitCode: number | null;
  /** As the rebuild reports it: folding and comparing, without process start-up. */
  ms: number | null;
  /** Spawn to exit. */
  wallMs: number;
  peakMiB: number | null;
  events: number | null;
  tasks: number | null;
  differences: number | null;
}

/** The bench's own environment less anything that would point a child at other storage. */
export function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && k !== 'DATABASE_URL' && !k.startsWith('TRAINYARD_') && !k.startsWith('npm_')) env[k] = v;
  }
  return env;
}

/**
 * Node's arguments in package.json's `rebuild` script (its V8 flags included: they set the peak
 * memory measured here), so the child is exactly what `npm run rebuild` runs, without npm between.
 */
function rebuildScriptArgs(): string[] {
  const script = (JSON.parse(readFileSync(join(getServerRoot(), 'package.json'), 'utf8')) as { scripts: { rebuild: string } }).scripts
    .rebuild;
  const [command, ...args] = script.split(/\s+/);
  if (command !== 'node') throw new Error(`bench: the rebuild script should start with node: ${script}`);
  return args;
}

/** `npm run rebuild -- --json` of the checkout under test against the given storage, with the peak RSS sampled from /proc. */
export async function runRebuild(env: Record<string, string>): Promise<RebuildResult> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [...rebuildScriptArgs(), '--json'], {
    cwd: getServerRoot(),
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: string[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => out.push(l));
  createInterface({ input: child.stderr }).on('line', (l) => out.push(l));
  let peak: number | null = null;
  const sampler = setInterval(() => {
    const m = processMemory(child.pid!);
    if (m) peak = Math.max(peak ?? 0, m.peakMiB);
  }, 50);
  const exitCode = await new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  clearInterval(sampler);
  const wallMs = Math.round(performance.now() - t0);
  const json = out.find((l) => l.startsWith('{'));
  if (!json) return { ok: false, exitCode, ms: null, wallMs, peakMiB: peak, events: null, tasks: null, differences: null };
  const r = JSON.parse(json) as { ms: number; events: number; tasks: number; differences: unknown[] };
  return {
    ok: exitCode === 0 && r.differences.length === 0,
    exitCode,
    ms: r.ms,
    wallMs,
    peakMiB: peak,
    events: r.events,
    tasks: r.tasks,
    differences: r.differences.length,
  };
}
