// The Python that has torch, for the specs that run our Python programs for real (the tiny torch
// trainer, the adapter merge): Debian's /usr/bin/python3 with python3-torch, or PYTHON3_PATH.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const PYTHON = process.env.PYTHON3_PATH ?? '/usr/bin/python3';

/** Why PYTHON cannot run torch here, or null when it can. */
export const torchMissing: string | null = (() => {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  const r = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
  return r.status === 0 ? null : `${PYTHON} cannot import torch (${(r.stderr || r.error?.message || '').trim().split('\n').pop()})`;
})();

/** What to do about it, for skipLoudlyOrFail. */
export const TORCH_HINT = 'apt-get install python3-torch, or set PYTHON3_PATH';
