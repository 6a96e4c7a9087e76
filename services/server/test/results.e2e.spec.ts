// A finished task's results, end to end on both databases (the real server over HTTP, the
// simulated trainer): tasks.outputs gives the output folder and each artifact with its absolute
// path and size, as they are on disk; the typed client's downloadOutputs streams the folder as a
// .tar.gz (the REST route's archive) and names what it refuses.
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DownloadError, downloadOutputs } from '@trainyard/client';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { waitTerminal } from './lifecycle-support';
import { simulated, startServer, type RunningServer } from './harness';

/** Bytes and files under a folder, as a walk of it finds them. */
function du(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      const sub = du(p);
      bytes += sub.bytes;
      files += sub.files;
    } else {
      bytes += statSync(p).size;
      files += 1;
    }
  }
  return { bytes, files };
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`task results on ${backend.kind}`, () => {
    let s: RunningServer;
    beforeAll(async () => {
      s = await startServer({ backend });
    });
    afterAll(async () => {
      await s?.dispose();
    });

    it('gives the output folder and each artifact with its absolute path and size', async () => {
      const t = await s.client.tasks.create.mutate(simulated({ steps: 3, stepMs: 20 }, { name: 'results' }));
      const done = await waitTerminal(s.client, t.id);
      expect(done.status).toBe('COMPLETED');
      const folder = join(s.dataDir, 'outputs', t.id);
      // More in the folder than the trainer wrote: a nested file counts too.
      mkdirSync(join(folder, 'extra'), { recursive: true });
      writeFileSync(join(folder, 'extra', 'notes.txt'), 'x'.repeat(1234));
      const o = await s.client.tasks.outputs.query({ id: t.id });
      expect(o.folder).toEqual({ path: folder, kind: 'folder', ...du(folder), partial: false });
      expect(o.folder.files).toBeGreaterThanOrEqual(2);
      expect(o.artifacts).toEqual([{ path: folder, kind: 'folder', ...du(folder), partial: false }]);
      expect(done.artifacts).toEqual([folder]);
      // Gone from disk: said so, not an error.
      rmSync(folder, { recursive: true, force: true });
      const gone = await s.client.tasks.outputs.query({ id: t.id });
      expect(gone.folder).toEqual({ path: folder, kind: 'missing', bytes: null, files: null, partial: false });
    });

    it('names a task without a name by its model, its dataset and the end of its id', async () => {
      const t = await s.client.tasks.create.mutate({ ...simulated({ steps: 1 }), name: undefined });
      expect(t.spec.name).toBe(`Qwen2.5-Coder-0.5B-Instruct on tiny-dataset · ${t.id.slice(-6)}`);
      await waitTerminal(s.client, t.id);
    });

    it('answers for a task that has not run yet, and refuses an unknown one', async () => {
      const blocker = await s.client.tasks.create.mutate(simulated({ steps: 100_000, stepMs: 100 }, { name: 'blocker' }));
      const waiting = await s.client.tasks.create.mutate(simulated({ steps: 3 }, { name: 'waiting' }));
      const o = await s.client.tasks.outputs.query({ id: waiting.id });
      expect(o).toEqual({
        folder: { path: join(s.dataDir, 'outputs', waiting.id), kind: 'missing', bytes: null, files: null, partial: false },
        artifacts: [],
      });
      await expect(s.client.tasks.outputs.query({ id: 'tnosuchtask' })).rejects.toThrow(/not found/);
      // The download of a task that is not completed is refused, naming its state.
      const refused = await downloadOutputs(blocker.id, { url: s.url }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(DownloadError);
      expect(refused).toMatchObject({ status: 400, message: expect.stringMatching(/^Task is not completed yet/) });
      await expect(downloadOutputs('tnosuchtask', { url: s.url })).rejects.toMatchObject({ status: 404 });
      for (const id of [blocker.id, waiting.id]) await s.client.tasks.cancel.mutate({ id });
      for (const id of [blocker.id, waiting.id]) await waitTerminal(s.client, id);
    });

    it('streams a completed task’s output folder as a .tar.gz through the typed client', async () => {
      const t = await s.client.tasks.create.mutate(simulated({ steps: 3, stepMs: 20 }, { name: 'download' }));
      expect((await waitTerminal(s.client, t.id)).status).toBe('COMPLETED');
      const got = await downloadOutputs(t.id, { url: s.url });
      expect(got.filename).toBe(`${t.id}_finetuned_model.tar.gz`);
      const names: string[] = [];
      await pipeline(
        Readable.fromWeb(got.body as Parameters<typeof Readable.fromWeb>[0]),
        tar.t({ onReadEntry: (e) => void names.push(e.path) }),
      );
      expect(names).toContain(`${t.id}/adapter_config.json`);
      // Unreachable: no status.
      await expect(downloadOutputs(t.id, { url: 'http://127.0.0.1:9' })).rejects.toMatchObject({ status: null });
    });
  });
}
