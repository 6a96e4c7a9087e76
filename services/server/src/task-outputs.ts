// What a task left in its output folder: the folder's absolute path and size, and each artifact it
// recorded with its size (a folder's is the sum of the files in it). Read when asked; symbolic
// links are not followed (a link counts as itself), and a walk stops after `maxEntries` entries,
// when the size is at least what was counted (`partial`).
import type { Dirent } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface OutputEntry {
  /** Absolute path. */
  path: string;
  kind: 'file' | 'folder' | 'missing';
  /** Bytes of the file, or of the files in the folder; null when missing. */
  bytes: number | null;
  /** Files in it (1 for a file); null when missing. */
  files: number | null;
  /** The walk stopped early: there is at least this much. */
  partial: boolean;
}

/** Entries one description reads at most (the folder and every artifact together). */
const MAX_ENTRIES = 20_000;

export async function describeOutputs(
  folder: string,
  artifacts: readonly string[],
  maxEntries = MAX_ENTRIES,
): Promise<{ folder: OutputEntry; artifacts: OutputEntry[] }> {
  const budget = { left: maxEntries };
  const described = await describe(folder, budget);
  const list: OutputEntry[] = [];
  for (const a of artifacts) list.push(await describe(a, budget));
  return { folder: described, artifacts: list };
}

async function describe(path: string, budget: { left: number }): Promise<OutputEntry> {
  const st = await lstat(path).catch(() => null);
  if (!st) return { path, kind: 'missing', bytes: null, files: null, partial: false };
  if (!st.isDirectory()) return { path, kind: 'file', bytes: st.size, files: 1, partial: false };
  const total = { bytes: 0, files: 0, partial: false };
  await walk(path, total, budget);
  return { path, kind: 'folder', bytes: total.bytes, files: total.files, partial: total.partial };
}

async function walk(dir: string, total: { bytes: number; files: number; partial: boolean }, budget: { left: number }): Promise<void> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    total.partial = true;
    return;
  }
  for (const e of entries) {
    if (budget.left-- <= 0) {
      total.partial = true;
      return;
    }
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      await walk(p, total, budget);
      if (total.partial && budget.left <= 0) return;
      continue;
    }
    const st = await lstat(p).catch(() => null);
    if (!st) continue;
    total.bytes += st.size;
    total.files += 1;
  }
}
