// Reads a dataset at submission, so that an empty, unreadable or malformed one is refused then
// (naming the field) instead of failing its trainer hours later. A file is streamed through the
// checker (dataset-check.ts); a folder is walked only to see that it holds files, since what a
// trainer reads from a folder is the trainer's business.
import { constants, lstatSync, type Stats } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DatasetChecker, refusalOf, warningsOf, type DatasetReport } from './dataset-check';
import { MAX_JSON_TEXT_BYTES } from './upload';

export type DatasetSummary =
  | ({ kind: 'file' } & Omit<DatasetReport, 'malformed' | 'notJson' | 'notJsonCount' | 'unreadable'> & {
        malformed: { line: number | null; record: number; reason: string }[];
      })
  | { kind: 'folder'; files: number };

export type DatasetInspection = { ok: true; summary: DatasetSummary; warnings: string[] } | { ok: false; problem: string };

/** A folder is walked this deep and this far at most to find a file. */
const FOLDER_DEPTH = 8;
const FOLDER_ENTRIES = 10_000;
const READ_CHUNK = 1 << 20;
/** Files whose inspection is remembered (a sweep submits one dataset many times). */
const REMEMBERED_FILES = 64;

/**
 * Inspections of files, by path, with what identified the file then (device, inode, size, change
 * times): a file changed or replaced since is inspected again, one unchanged is not read again.
 */
const remembered = new Map<string, { identity: string; result: DatasetInspection }>();
const identityOf = (st: Stats) => `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;

/**
 * What `path` (a real path inside the datasets roots, as resolveDataset returns it) holds, or
 * why it cannot be trained on.
 */
export async function inspectDataset(path: string): Promise<DatasetInspection> {
  // Synchronous for the reason resolveDataset's calls are (datasets.ts); reading stays async.
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (err) {
    return { ok: false, problem: `it cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
  }
  if (st.isDirectory()) return inspectFolder(path);
  const known = remembered.get(path);
  if (known && known.identity === identityOf(st)) return structuredClone(known.result);
  return inspectFile(path);
}

/** A file changed this recently may change again within its timestamps' granularity unseen (git's "racy" files): not remembered. */
const SETTLED_MS = 2000;

function remember(path: string, st: Stats, result: DatasetInspection): DatasetInspection {
  if (Date.now() - Math.max(st.mtimeMs, st.ctimeMs) < SETTLED_MS) return result;
  const identity = identityOf(st);
  remembered.delete(path);
  remembered.set(path, { identity, result: structuredClone(result) });
  if (remembered.size > REMEMBERED_FILES) remembered.delete(remembered.keys().next().value!);
  return result;
}

async function inspectFile(path: string): Promise<DatasetInspection> {
  // O_NONBLOCK: a FIFO put in its place must not hang the submission (no effect on files).
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => err);
  if (handle instanceof Error) return { ok: false, problem: `it cannot be read (${handle.code ?? handle.message})` };
  try {
    const st = await handle.stat();
    if (!st.isFile()) return { ok: false, problem: 'it is neither a file nor a folder' };
    const checker = new DatasetChecker({ maxJsonBytes: MAX_JSON_TEXT_BYTES });
    // No bigger than the file (one byte more sees its end in the same read), and not zero-filled
    // (only the bytes read are looked at): a zeroed 1 MiB buffer per submission costs more than
    // checking a small dataset, and is garbage to collect.
    const size = Math.max(1, Math.min(READ_CHUNK, st.size + 1));
    const buffer = Buffer.allocUnsafe(size);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, size, null);
      if (bytesRead === 0) break;
      checker.push(buffer.subarray(0, bytesRead));
    }
    const report = checker.end();
    const problem = refusalOf(report);
    // What was read is what the file held when opened (its identity then): remembered under it.
    if (problem) return remember(path, st, { ok: false, problem });
    const { malformed, layout, format, formats, records, malformedCount, estimatedTokens, bytes } = report;
    return remember(path, st, {
      ok: true,
      summary: {
        kind: 'file',
        layout,
        format,
        formats,
        records,
        malformedCount,
        malformed: malformed.map(({ line, record, reason }) => ({ line, record, reason })),
        estimatedTokens,
        bytes,
      },
      warnings: warningsOf(report),
    });
  } catch (err) {
    return { ok: false, problem: `it cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
  } finally {
    await handle.close();
  }
}

/** Refused when it holds no file at all (symbolic links count: the launcher checks where they lead). */
async function inspectFolder(root: string): Promise<DatasetInspection> {
  let files = 0;
  let seen = 0;
  const walk = async (dir: string, depth: number): Promise<string | null> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      return `it cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
    }
    for (const e of entries) {
      if (++seen > FOLDER_ENTRIES) return null;
      if (e.isFile() || e.isSymbolicLink()) files += 1;
      else if (e.isDirectory() && depth < FOLDER_DEPTH) {
        const problem = await walk(join(dir, e.name), depth + 1);
        if (problem) return problem;
      }
    }
    return null;
  };
  const problem = await walk(root, 0);
  if (problem) return { ok: false, problem };
  if (files === 0) return { ok: false, problem: 'it is an empty folder' };
  return { ok: true, summary: { kind: 'folder', files }, warnings: [] };
}
