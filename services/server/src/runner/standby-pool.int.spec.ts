// The standby pool with warm trainers, for real (shepherds and simulated trainers as processes):
// it keeps a warm trainer while tasks are queued and retires it when nothing is, when the
// trainer command changes, or after the idle limit. Waits on conditions; no timing assertions.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { isSameProcessAlive } from '../trainer/proc';
import type { WarmSpec } from '../trainer/warm.mjs';
import { StandbyPool } from './standby-pool';

const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../..');
const root = mkdtempSync(join(tmpdir(), 'trainyard-pool-'));
const runsDir = join(root, 'runs');
mkdirSync(runsDir);
const pools: StandbyPool[] = [];
afterEach(() => {
  for (const p of pools.splice(0)) p.close();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const simulated = (extra: Record<string, string> = {}): WarmSpec => ({
  argv: [process.execPath, join(REPO_ROOT, 'trainers/simulated-trainer.mjs')],
  cwd: REPO_ROOT,
  env: { PATH: process.env.PATH ?? '/usr/bin', ...extra },
});

async function until<T>(fn: () => T, what: string, ms = 60_000): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The warm trainer a standby shepherd started (its child), with its /proc start time. */
function warmTrainerOf(shepherdPid: number): { pid: number; startTime: string } | null {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === shepherdPid) return { pid: Number(name), startTime: fields[19]! };
    } catch {
      // gone
    }
  }
  return null;
}

function pool(opts: { idleLimitMs?: number; spec: () => WarmSpec; queued: () => number }) {
  const said: string[] = [];
  const p = new StandbyPool(runsDir, (m) => said.push(m), {
    idleLimitMs: opts.idleLimitMs ?? 60_000,
    spec: opts.spec,
    queued: async () => opts.queued(),
    info: (m) => said.push(m),
  });
  pools.push(p);
  return { p, said };
}

const readyWarm = (p: StandbyPool) => until(() => (p.current?.warmTrainer === 'ready' ? p.current : null), 'a ready warm trainer');

describe('StandbyPool with warm trainers', () => {
  it('while tasks are queued it holds a warm trainer; once none are, it retires it for a plain standby', { timeout: 90_000 }, async () => {
    let queued = 2;
    const { p, said } = pool({ spec: () => simulated(), queued: () => queued });
    p.ensure();
    const standby = await readyWarm(p);
    const trainer = warmTrainerOf(standby.pid)!;
    expect(trainer).not.toBeNull();
    queued = 0;
    await until(() => p.current && p.current !== standby && p.current.warm === null, 'a plain standby');
    await until(() => !isSameProcessAlive(trainer.pid, trainer.startTime), 'the retired warm trainer to exit');
    expect(said).toContain('warm trainer retired (nothing queued)');
  });

  it('a warm trainer of a command no longer used is replaced by one of the new command', { timeout: 90_000 }, async () => {
    let spec = simulated();
    const { p, said } = pool({ spec: () => spec, queued: () => 1 });
    p.ensure();
    const first = await readyWarm(p);
    const trainer = warmTrainerOf(first.pid)!;
    spec = simulated({ HF_HOME: '/elsewhere' });
    const second = await until(
      () => (p.current && p.current !== first && p.current.warm?.env.HF_HOME === '/elsewhere' ? p.current : null),
      'a warm trainer of the new command',
    );
    await until(() => !isSameProcessAlive(trainer.pid, trainer.startTime), 'the old warm trainer to exit');
    expect(said).toContain('warm trainer retired (command changed)');
    expect(second.warmTrainer).not.toBe('died');
  });

  it(
    'a warm trainer that waited the idle limit is retired, and none is started again until the next launch',
    { timeout: 90_000 },
    async () => {
      const { p, said } = pool({ idleLimitMs: 1500, spec: () => simulated(), queued: () => 1 });
      p.ensure();
      // Its wait counts from its start (a loaded machine may not even see it ready within the limit).
      const standby = await until(() => (p.current?.warm ? p.current : null), 'a warm standby');
      await until(() => p.current && p.current !== standby && p.current.warm === null, 'a plain standby after the idle limit');
      expect(said).toContain('warm trainer retired (idle)');
      p.nudge();
      await new Promise((r) => setTimeout(r, 300));
      expect(p.current?.warm ?? null).toBeNull();
      // A launch takes the standby; the next one is warm again.
      p.take()?.dispose();
      p.ensure();
      await until(() => p.current?.warm, 'a warm standby after the launch');
    },
  );

  it('a trainer that does not do standby (it exits without ready) is not warmed after two tries', { timeout: 90_000 }, async () => {
    const broken: WarmSpec = { argv: [process.execPath, '-e', 'process.exit(3)'], cwd: REPO_ROOT, env: { PATH: process.env.PATH ?? '' } };
    const { p, said } = pool({ spec: () => broken, queued: () => 1 });
    for (let i = 0; i < 2; i++) {
      p.take()?.dispose();
      p.ensure();
      await until(() => p.current?.warmTrainer === 'died', `warm try ${i + 1} to die`);
    }
    await until(() => said.some((m) => m.includes('died 2 times before they were ready')), 'the warning');
    p.take()?.dispose();
    p.ensure();
    await until(() => p.current, 'a standby');
    expect(p.current!.warm).toBeNull();
  });
});
