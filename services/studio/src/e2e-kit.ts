// What every browser spec of the panel shares: where the panel and its build are, the Chromium
// they drive and its flags, the check that Chromium is there (in CI its absence fails the run),
// and building the panel once before a spec serves it.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { REPO_ROOT } from '@trainyard/server/testing';
import { skipLoudlyOrFail } from '@trainyard/store/testing';

export const STUDIO = resolve(import.meta.dirname, '..');
export const DIST = join(STUDIO, 'dist');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export const hasChromium = existsSync(CHROMIUM);
if (!hasChromium)
  skipLoudlyOrFail(`${CHROMIUM} not found: the Studio browser specs cannot run`, 'apt-get install chromium, or set CHROMIUM_PATH');

/** Build the panel if its build is missing or stale; a failed build fails the spec. */
export function ensurePanelBuilt(): void {
  const build = spawnSync(process.execPath, [join(STUDIO, 'scripts/ensure-built.mjs'), '--strict'], { cwd: REPO_ROOT, encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`panel build failed:\n${build.stdout}\n${build.stderr}`);
}
