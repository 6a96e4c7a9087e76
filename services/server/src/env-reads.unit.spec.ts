// One home for the environment (issue 11): the service's code and the packages it runs on read
// no variable outside the config files. A few places hand the whole environment on to a child
// process they start, reading no variable themselves; each is named here with why.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './config';

const ROOTS = ['services/server/src', 'packages/domain/src', 'packages/store/src', 'packages/catalogue/src', 'packages/sim/src'];

const ALLOWED: Record<string, string> = {
  'services/server/src/config.ts': 'reads every variable of the service, validated once',
  'packages/store/src/config.ts':
    "the storage variables (DATABASE_URL, TRAINYARD_DATA_DIR, …), read by config.ts and by the store's own CLIs",
  'packages/store/src/migrate-cli.ts': 'a program of its own: hands its environment to storageFromEnv',
  'services/server/src/gpu/probe.ts': 'hands the environment (PATH) to nvidia-smi',
  'services/server/src/executor/slurm.ts': "hands the environment to sbatch, squeue and scancel; its batch script reads the job's own",
};

function sources(dir: string): string[] {
  return readdirSync(join(REPO_ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return /\.(ts|mts|mjs|tsx)$/.test(e.name) && !/\.spec\.ts$/.test(e.name) ? [path] : [];
  });
}

describe('environment reads', () => {
  it('given the service and its packages, then only the config files read the environment (and the named hand-overs)', () => {
    const reading = ROOTS.flatMap(sources)
      .filter((f) => readFileSync(join(REPO_ROOT, f), 'utf8').includes('process.env'))
      .map((f) => relative('.', f));
    expect(reading.filter((f) => !(f in ALLOWED))).toEqual([]);
    expect(reading).toContain('services/server/src/config.ts');
  });
});
