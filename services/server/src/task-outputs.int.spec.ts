// describeOutputs on real files: sizes summed through nested folders, a symbolic link counted as
// itself (never followed), a missing path said so, and a walk cut at its bound said to be partial.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeOutputs } from './task-outputs';

const root = mkdtempSync(join(tmpdir(), 'task-outputs-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('describeOutputs', () => {
  it('sums files through nested folders and counts a link as itself', async () => {
    const out = join(root, 'out');
    mkdirSync(join(out, 'adapter', 'deep'), { recursive: true });
    writeFileSync(join(out, 'adapter', 'weights.bin'), Buffer.alloc(3000));
    writeFileSync(join(out, 'adapter', 'deep', 'config.json'), '{}');
    writeFileSync(join(root, 'big-outside.bin'), Buffer.alloc(100_000));
    symlinkSync(join(root, 'big-outside.bin'), join(out, 'link.bin'));
    const d = await describeOutputs(out, [join(out, 'adapter'), join(out, 'adapter', 'weights.bin'), join(out, 'nope')]);
    const linkSize = join(root, 'big-outside.bin').length;
    expect(d.folder).toEqual({ path: out, kind: 'folder', bytes: 3002 + linkSize, files: 3, partial: false });
    expect(d.artifacts).toEqual([
      { path: join(out, 'adapter'), kind: 'folder', bytes: 3002, files: 2, partial: false },
      { path: join(out, 'adapter', 'weights.bin'), kind: 'file', bytes: 3000, files: 1, partial: false },
      { path: join(out, 'nope'), kind: 'missing', bytes: null, files: null, partial: false },
    ]);
  });

  it('stops after its bound of entries and says the size is at least what it counted', async () => {
    const many = join(root, 'many');
    mkdirSync(many);
    for (let i = 0; i < 50; i++) writeFileSync(join(many, `f${i}`), 'ab');
    const d = await describeOutputs(many, [many], 20);
    expect(d.folder).toMatchObject({ kind: 'folder', partial: true, files: 20, bytes: 40 });
    // The bound is shared: nothing was left for the artifact.
    expect(d.artifacts[0]).toMatchObject({ kind: 'folder', partial: true, files: 0 });
  });
});
