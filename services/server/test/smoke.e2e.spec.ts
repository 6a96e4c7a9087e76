import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { eventually, simulated, startServer, type RunningServer } from './harness';

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`smoke on ${backend.kind}`, () => {
    let s: RunningServer;
    beforeAll(async () => {
      // As on a new machine: the service makes its PGlite database itself.
      s = await startServer({ backend, newDatabase: true });
    });
    afterAll(async () => {
      await s?.dispose();
    });
    it('serves health and runs one task to COMPLETED', async () => {
      const h = await s.client.system.health.query();
      expect(h).toMatchObject({ ok: true, storage: backend.kind });
      const t = await s.client.tasks.create.mutate(simulated({ steps: 3, stepMs: 20 }));
      const done = await eventually(async () => {
        const x = await s.client.tasks.get.query({ id: t.id });
        return x.status === 'COMPLETED' ? x : null;
      }, 'task to complete');
      expect(done.progress.percent).toBe(100);
      // The trainer's last line is stored no later than the task's final event (with it, on a
      // clean exit): read right after COMPLETED, not eventually.
      const { lines } = await s.client.tasks.logs.query({ id: t.id, limit: 5000 });
      expect(lines.at(-1)?.line).toContain('saved adapter to');
      expect(await s.client.system.ping.query()).toMatchObject({ ok: true });
    });
  });
}
