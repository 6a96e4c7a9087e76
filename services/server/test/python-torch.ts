// The Python that has torch, for the specs that run our Python programs for real (the tiny torch
// trainer, the adapter merge): Debian's /usr/bin/python3 with python3-torch, or PYTHON3_PATH.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { skipLoudlyOrFail } from '@trainyard/store/testing';

export const PYTHON = process.env.PYTHON3_PATH ?? '/usr/bin/python3';

/** Why PYTHON cannot run torch here, or null when it can. */
const torchMissing: string | null = (() => {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  const r = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
  return r.status === 0 ? null : `${PYTHON} cannot import torch (${(r.stderr || r.error?.message || '').trim().split('\n').pop()})`;
})();

/**
 * Whether specs that need torch (`what`) can run here. Every `skipIf(!torchAvailable(…))` goes
 * through this one check, as `backendAvailable` does for Postgres: in CI a missing torch throws
 * (the spec file fails), elsewhere it is skipped with a loud warning.
 */
export function torchAvailable(what: string): boolean {
  if (torchMissing === null) return true;
  skipLoudlyOrFail(`${torchMissing}: ${what} cannot run`, 'apt-get install python3-torch, or set PYTHON3_PATH');
  return false;
}
