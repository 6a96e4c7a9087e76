// Where a trainer may read its dataset from: inside the datasets roots (TRAINYARD_DATASETS_ROOT,
// else <data>/datasets, and the uploads folder), judged on real paths (symbolic links followed).
//
// A submission stores the dataset's real path. A trainer may start hours later, and by then a
// folder on the way may have been swapped for a symbolic link that leads out of the roots. So at
// launch the path is resolved again (it must still be itself, inside a root), and the dataset is
// copied into the run folder, opening every file and folder and checking where the opened one
// really is (Linux: /proc/self/fd), never a path that could change between check and use. The
// trainer reads only that copy. A copy rather than a hard link: a link shares the inode (a
// trainer could write through it into the original, and the run folder's 0600 mode could not be
// set without changing the original's), and links fail across filesystems and on files of other
// users (protected_hardlinks). The copy asks for copy-on-write (COPYFILE_FICLONE: free on btrfs
// and XFS, a plain copy elsewhere) and is removed when the run ends.
import {
  chmodSync,
  closeSync,
  constants,
  copyFileSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  type Stats,
} from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { basename, join, resolve, sep } from 'node:path';

/** `path` is `root` or below it (both absolute and normalised). */
export function isInside(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** The one answer for a dataset that is missing, unreadable or outside the roots. */
export function datasetNotAllowedMessage(path: string): string {
  return `dataset ${path} not found or not allowed: a dataset is a file or folder inside the datasets folders (TRAINYARD_DATASETS_ROOT), or an uploaded file`;
}

/** A dataset that cannot be used at launch (the task fails with this message). */
export class DatasetError extends Error {
  override name = 'DatasetError';
}

/** Real paths of the roots that exist (a root that does not exist holds nothing). */
function realRoots(roots: readonly string[]): string[] {
  const out: string[] = [];
  for (const root of roots) {
    try {
      out.push(realpathSync.native(root));
    } catch {
      // absent: nothing can be inside it
    }
  }
  return out;
}

/**
 * The real path of the dataset `path` names, if it is a file or folder inside one of `roots`;
 * null otherwise, whatever the reason (absent, unreadable, outside, a device), so that an answer
 * never tells a caller whether something exists outside the roots.
 *
 * Synchronous, as the launch's checks are: each is one system call on a path's metadata
 * (libc's realpath, a stat), where a promise through libuv's thread pool costs several times the
 * call itself in CPU, and this runs at every submission.
 */
export function resolveDataset(path: string, roots: readonly string[]): string | null {
  let real: string;
  let st: Stats;
  try {
    real = realpathSync.native(resolve(path));
    if (!realRoots(roots).some((r) => isInside(r, real))) return null;
    st = statSync(real);
  } catch {
    return null;
  }
  return st.isFile() || st.isDirectory() ? real : null;
}

/** Folders deeper than this in a dataset are refused (and symbolic-link loops end here). */
const MAX_DEPTH = 32;
/** Files above this size are copied off the event loop; smaller ones at once. */
const SYNC_COPY_BYTES = 1 << 20;

/**
 * Checks the dataset stored at submission (`stored`, a real path) again and copies it into
 * `destDir` (created 0700, or emptied), files 0600. Returns the path of the copy, which is
 * what the trainer is given. Throws DatasetError when the dataset is gone, no longer the same
 * path, or leads out of the roots anywhere inside it.
 */
export async function stageDataset(stored: string, roots: readonly string[], destDir: string): Promise<string> {
  const allowed = realRoots(roots);
  let real: string | null = null;
  try {
    real = realpathSync(stored);
  } catch {
    // below
  }
  if (real === null) throw new DatasetError(`dataset ${stored} is no longer there (removed after the task was submitted)`);
  if (real !== stored || !allowed.some((r) => isInside(r, real)))
    throw new DatasetError(
      `dataset ${stored} is no longer inside the datasets root (it was moved or replaced by a symbolic link after the task was submitted)`,
    );
  emptyPrivateDir(destDir);
  const target = join(destDir, basename(stored));
  await copyChecked(stored, target, '.', { stored, allowed, ancestors: [], depth: 0 });
  return target;
}

/**
 * `dir` as an empty folder of mode 0700: one already there and empty (made ahead of the launch,
 * see runner/spare-run-folder.ts) is kept; anything else there (a partial copy of an earlier
 * launch, a file, a symbolic link) is removed and the folder made.
 */
function emptyPrivateDir(dir: string): void {
  try {
    // lstat: a symbolic link planted in the run folder is not followed.
    if (lstatSync(dir).isDirectory() && readdirSync(dir).length === 0) {
      chmodSync(dir, 0o700);
      return;
    }
  } catch {
    // not there (or unreadable): made below
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { mode: 0o700 });
  chmodSync(dir, 0o700);
}

interface Walk {
  stored: string;
  allowed: string[];
  /** dev:ino of the folders above this entry (a folder inside itself is a loop). */
  ancestors: string[];
  depth: number;
}

/** Where an open file really is (its link in /proc), or null where /proc is not there. */
function openedPath(fd: number): string | null {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return null;
  }
}

/** Copies what `path` opens to `target`; `rel` names it inside the dataset, for messages. */
async function copyChecked(path: string, target: string, rel: string, walk: Walk): Promise<void> {
  // O_NONBLOCK: a FIFO planted in the dataset must not hang the launch (no effect on files).
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new DatasetError(`dataset ${walk.stored}: cannot read ${rel} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    // The file this descriptor reads, wherever a symbolic link or a swapped folder led the open.
    const where = openedPath(fd) ?? realpathSync(path);
    if (!walk.allowed.some((r) => isInside(r, where)))
      throw new DatasetError(`dataset ${walk.stored} is no longer inside the datasets root (${rel} leads out of it)`);
    // Through /proc the descriptor is reopened: the very file checked above, not a path again.
    const self = openedPath(fd) === null ? where : `/proc/self/fd/${fd}`;
    const st = fstatSync(fd);
    if (st.isFile()) {
      if (st.size < SYNC_COPY_BYTES) copyFileSync(self, target, constants.COPYFILE_FICLONE);
      else await copyFile(self, target, constants.COPYFILE_FICLONE);
      chmodSync(target, 0o600);
    } else if (st.isDirectory()) {
      const id = `${st.dev}:${st.ino}`;
      if (walk.ancestors.includes(id) || walk.depth >= MAX_DEPTH)
        throw new DatasetError(`dataset ${walk.stored} nests deeper than ${MAX_DEPTH} folders or loops through a symbolic link`);
      mkdirSync(target, { mode: 0o700 });
      chmodSync(target, 0o700);
      const inner: Walk = { ...walk, ancestors: [...walk.ancestors, id], depth: walk.depth + 1 };
      for (const name of readdirSync(self).sort())
        await copyChecked(join(self, name), join(target, name), rel === '.' ? name : `${rel}/${name}`, inner);
    } else {
      throw new DatasetError(`dataset ${walk.stored}: ${rel} is neither a file nor a folder`);
    }
  } finally {
    closeSync(fd);
  }
}
