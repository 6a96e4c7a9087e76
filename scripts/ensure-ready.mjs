// Runs before `npm start` and `npm test`: on a fresh clone, installs the dependencies first
// (so the README's two commands work as they are). No dependencies of its own.
import { existsSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const marker = join(root, 'node_modules', '.package-lock.json');
const lock = join(root, 'package-lock.json');
const stale = !existsSync(marker) || statSync(marker).mtimeMs < statSync(lock).mtimeMs - 1000;
if (stale) {
  console.error('[trainyard] installing dependencies (npm ci) ...');
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error('[trainyard] npm ci failed: see the output above (is the npm registry reachable?)');
    process.exit(r.status ?? 1);
  }
}
