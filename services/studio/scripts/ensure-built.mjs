#!/usr/bin/env node
// Builds the Studio panel when services/studio/dist/index.html is missing or older than any of
// its sources; does nothing otherwise. Run by the root `prestart` (so `npm start` serves a
// current panel) and by the browser specs. A failed build is reported but does not stop
// `npm start`: the API works without the panel. Builds are one at a time: browser spec files
// run side by side, and a second build would empty dist/ under a page the first one serves.
//
//   node services/studio/scripts/ensure-built.mjs [--strict]   (--strict: exit 1 if the build fails)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const STUDIO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const REPO = resolve(STUDIO, '../..');
const INDEX = join(STUDIO, 'dist', 'index.html');
const strict = process.argv.includes('--strict');

/** Files whose change makes a new build necessary (specs are not part of the bundle). */
const SOURCES = [
  join(STUDIO, 'src'),
  join(STUDIO, 'index.html'),
  join(STUDIO, 'vite.config.ts'),
  join(STUDIO, 'package.json'),
  // The shared catalogue (models, presets, memory estimate) the panel bundles.
  join(REPO, 'packages/catalogue/src'),
  // The typed client (links, upload, the fetch-based EventSource) the panel bundles too.
  join(REPO, 'packages/client/src'),
];

function newest(path) {
  if (!existsSync(path)) return { mtime: 0, file: null };
  const st = statSync(path);
  if (!st.isDirectory()) return /\.spec\.tsx?$/.test(path) ? { mtime: 0, file: null } : { mtime: st.mtimeMs, file: path };
  let best = { mtime: 0, file: null };
  for (const entry of readdirSync(path)) {
    const n = newest(join(path, entry));
    if (n.mtime > best.mtime) best = n;
  }
  return best;
}

function reason() {
  if (!existsSync(INDEX)) return 'the panel is not built yet';
  const built = statSync(INDEX).mtimeMs;
  let latest = { mtime: 0, file: null };
  for (const s of SOURCES) {
    const n = newest(s);
    if (n.mtime > latest.mtime) latest = n;
  }
  return latest.mtime > built ? `${relative(REPO, latest.file)} changed since the last build` : null;
}

if (!reason()) process.exit(0);

const LOCK = join(STUDIO, 'node_modules', '.panel-build-lock');
/** A lock older than this was left by a build that died (a build takes well under a minute). */
const LOCK_STALE_MS = 5 * 60_000;
mkdirSync(dirname(LOCK), { recursive: true });
for (;;) {
  try {
    mkdirSync(LOCK);
    break;
  } catch (err) {
    if (err.code !== 'EEXIST') throw err;
    const age = Date.now() - (statSync(LOCK, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
    if (age > LOCK_STALE_MS) rmSync(LOCK, { recursive: true, force: true });
    else Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
  }
}
let r = null;
try {
  // Another process may have built it while we waited.
  const why = reason();
  if (why) {
    console.log(`[studio] building the panel: ${why} ...`);
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    r = spawnSync(npm, ['run', 'build', '--silent', '-w', '@trainyard/studio'], { cwd: REPO, stdio: 'inherit' });
  }
} finally {
  rmSync(LOCK, { recursive: true, force: true });
}
if (r === null) process.exit(0);
if (r.status === 0) {
  console.log('[studio] panel built into services/studio/dist');
  process.exit(0);
}
const msg = r.error ? r.error.message : `exit code ${r.status ?? r.signal}`;
console.error(
  `[studio] the panel build failed (${msg}). ` +
    (existsSync(INDEX) ? 'The previous build is served.' : 'The server starts without the panel (the API still works).'),
);
process.exit(strict ? 1 : 0);
