// Dataset resolution and staging on a real filesystem: symbolic links that lead out of the roots,
// folders swapped after submission, loops, FIFOs.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatasetError, datasetNotAllowedMessage, isInside, resolveDataset, stageDataset } from './datasets';

let base: string;
let root: string;
let outside: string;
let stage: string;

beforeEach(() => {
  base = realpathSync(mkdtempSync(join(tmpdir(), 'trainyard-datasets-')));
  root = join(base, 'root');
  outside = join(base, 'outside');
  stage = join(base, 'run', 'dataset');
  mkdirSync(join(root, 'ds', 'sub'), { recursive: true });
  mkdirSync(join(base, 'run'));
  mkdirSync(outside);
  writeFileSync(join(root, 'ds', 'train.jsonl'), '{"text":"inside"}\n');
  writeFileSync(join(root, 'ds', 'sub', 'more.jsonl'), '{"text":"more"}\n');
  writeFileSync(join(root, 'file.jsonl'), '{"text":"file"}\n');
  writeFileSync(join(outside, 'secret.txt'), 'SECRET\n');
  writeFileSync(join(outside, 'train.jsonl'), '{"text":"SECRET"}\n');
});

afterEach(() => rmSync(base, { recursive: true, force: true }));

describe('isInside', () => {
  it('is a path-segment test, not a string prefix', () => {
    expect(isInside('/a/b', '/a/b')).toBe(true);
    expect(isInside('/a/b', '/a/b/c')).toBe(true);
    expect(isInside('/a/b', '/a/bc')).toBe(false);
    expect(isInside('/a/b/', '/a/b/c')).toBe(true);
    expect(isInside('/', '/x')).toBe(true);
  });
});

describe('resolveDataset', () => {
  it('gives the real path of a file or folder inside a root', () => {
    expect(resolveDataset(join(root, 'file.jsonl'), [root])).toBe(join(root, 'file.jsonl'));
    expect(resolveDataset(join(root, 'ds'), [outside, root])).toBe(join(root, 'ds'));
    // a link from elsewhere into the root is followed to the real path
    symlinkSync(join(root, 'ds'), join(base, 'link-in'));
    expect(resolveDataset(join(base, 'link-in'), [root])).toBe(join(root, 'ds'));
  });

  it('answers null alike for absent, outside, escaping and non-file paths', () => {
    symlinkSync(outside, join(root, 'escape'));
    execFileSync('mkfifo', [join(root, 'fifo')]);
    for (const p of [
      join(root, 'nope.jsonl'),
      join(outside, 'secret.txt'),
      '/etc/passwd',
      join(root, 'escape'),
      join(root, 'escape', 'secret.txt'),
      join(root, 'fifo'),
      '/dev/null',
    ])
      expect(resolveDataset(p, [root]), p).toBeNull();
    // a root that does not exist holds nothing
    expect(resolveDataset(join(root, 'file.jsonl'), [join(base, 'absent')])).toBeNull();
  });

  it('words the refusal without saying whether the path exists', () => {
    const a = datasetNotAllowedMessage('/etc/passwd');
    const b = datasetNotAllowedMessage('/no/such');
    expect(a.replace('/etc/passwd', 'P')).toBe(b.replace('/no/such', 'P'));
    expect(a).toContain('not found or not allowed');
  });
});

describe('stageDataset', () => {
  it('copies a file or a folder (following links that stay inside) into private files', async () => {
    const file = await stageDataset(join(root, 'file.jsonl'), [root], stage);
    expect(file).toBe(join(stage, 'file.jsonl'));
    expect(readFileSync(file, 'utf8')).toBe('{"text":"file"}\n');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(stage).mode & 0o777).toBe(0o700);

    symlinkSync(join(root, 'file.jsonl'), join(root, 'ds', 'linked.jsonl'));
    const dir = await stageDataset(join(root, 'ds'), [root], stage);
    expect(readdirSync(dir).sort()).toEqual(['linked.jsonl', 'sub', 'train.jsonl']);
    expect(readFileSync(join(dir, 'sub', 'more.jsonl'), 'utf8')).toBe('{"text":"more"}\n');
    expect(readFileSync(join(dir, 'linked.jsonl'), 'utf8')).toBe('{"text":"file"}\n');
    expect(statSync(join(dir, 'sub')).mode & 0o777).toBe(0o700);
    // staged again (a launch retried): the old copy is replaced, not merged
    expect(readdirSync(stage)).toEqual(['ds']);
  });

  it('copies into an empty folder made ahead of the launch, and never through a link planted where the copy goes', async () => {
    mkdirSync(stage, { mode: 0o755 });
    const made = statSync(stage).ino;
    await stageDataset(join(root, 'file.jsonl'), [root], stage);
    expect(statSync(stage).ino).toBe(made); // kept, not made again
    expect(statSync(stage).mode & 0o777).toBe(0o700);
    expect(readdirSync(stage)).toEqual(['file.jsonl']);

    rmSync(stage, { recursive: true });
    symlinkSync(outside, stage);
    const before = readdirSync(outside).sort();
    await stageDataset(join(root, 'file.jsonl'), [root], stage);
    expect(lstatSync(stage).isDirectory()).toBe(true);
    expect(readdirSync(stage)).toEqual(['file.jsonl']);
    expect(readdirSync(outside).sort()).toEqual(before);
  });

  it('refuses a folder swapped for a link that leads out after submission', async () => {
    const stored = join(root, 'ds');
    renameSync(stored, join(root, 'ds-old'));
    symlinkSync(outside, stored);
    await expect(stageDataset(stored, [root], stage)).rejects.toThrow(
      new DatasetError(
        `dataset ${stored} is no longer inside the datasets root (it was moved or replaced by a symbolic link after the task was submitted)`,
      ),
    );
  });

  it('refuses a parent folder swapped for a link even when it leads back inside', async () => {
    const stored = join(root, 'ds', 'train.jsonl');
    renameSync(join(root, 'ds'), join(root, 'elsewhere'));
    symlinkSync(join(root, 'elsewhere'), join(root, 'ds'));
    await expect(stageDataset(stored, [root], stage)).rejects.toThrow(/no longer inside the datasets root/);
  });

  it('refuses a file inside the folder swapped for a link out of the root', async () => {
    rmSync(join(root, 'ds', 'sub', 'more.jsonl'));
    symlinkSync(join(outside, 'secret.txt'), join(root, 'ds', 'sub', 'more.jsonl'));
    await expect(stageDataset(join(root, 'ds'), [root], stage)).rejects.toThrow(/sub\/more\.jsonl leads out of it/);
  });

  it('refuses a dataset that is gone, and loops and FIFOs inside one', async () => {
    await expect(stageDataset(join(root, 'gone.jsonl'), [root], stage)).rejects.toThrow(/no longer there/);
    symlinkSync(join(root, 'ds'), join(root, 'ds', 'sub', 'loop'));
    await expect(stageDataset(join(root, 'ds'), [root], stage)).rejects.toThrow(/loops through a symbolic link/);
    rmSync(join(root, 'ds', 'sub', 'loop'));
    execFileSync('mkfifo', [join(root, 'ds', 'pipe')]);
    await expect(stageDataset(join(root, 'ds'), [root], stage)).rejects.toThrow(/pipe is neither a file nor a folder/);
  });
});
