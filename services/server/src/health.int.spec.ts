// system.health keeps the service's internals (paths, host name, database user and location,
// trainer argv, runner id) for an admin (issue 10, finding 7). Here through the real router on a
// real service and database; tokens.e2e.spec.ts checks the same over HTTP with a user's token.
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendAvailable, backends, dropSchema, freshSchemaName } from '@trainyard/store/testing';
import { loadConfig } from './config';
import { appRouter, type Context } from './router';
import { TrainyardService, type Actor } from './service';

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`system.health on ${backend.kind}`, () => {
    let service: TrainyardService;
    let dataDir: string;
    const schema = backend.kind === 'postgres' ? freshSchemaName() : null;
    const caller = (actor: Actor) => appRouter.createCaller({ service, actor, client: `spec:${actor.user}` } as Context);

    beforeAll(async () => {
      dataDir = mkdtempSync(join(tmpdir(), 'trainyard-health-'));
      const env: Record<string, string> = {
        TRAINYARD_DATA_DIR: dataDir,
        TRAINYARD_GPU_SLOTS: '1',
        TRAINYARD_NVIDIA_SMI: join(dataDir, 'no-nvidia-smi'),
      };
      if (backend.url) Object.assign(env, { DATABASE_URL: backend.url, TRAINYARD_DB_SCHEMA: schema });
      service = await TrainyardService.start(loadConfig(env), { info: () => {}, warn: () => {}, error: () => {} });
    });

    afterAll(async () => {
      await service?.close();
      if (schema && backend.url) await dropSchema(backend.url, schema);
      rmSync(dataDir, { recursive: true, force: true });
    });

    it('a non-admin caller gets whether it works, and nothing of where things are', async () => {
      const h = await caller({ user: 'guest', admin: false }).system.health();
      expect(h).toMatchObject({ ok: true, storage: backend.kind, database: 'up', error: null, detail: null });
      const text = JSON.stringify(h);
      const secrets = [
        dataDir,
        hostname(),
        service.config.runnerId,
        service.database.location,
        ...service.config.trainer.filter((a) => a.includes('/')),
      ];
      if (backend.url) {
        const url = new URL(backend.url);
        secrets.push(url.hostname, `${url.hostname}:${url.port || 5432}`);
        if (url.username) secrets.push(`${url.username}@`);
      }
      for (const secret of secrets) expect(text, secret).not.toContain(secret);
    });

    it('an admin (the local operator) gets the detail', async () => {
      const h = await caller({ user: 'local', admin: true }).system.health();
      expect(h.ok).toBe(true);
      expect(h.detail).toMatchObject({
        location: service.database.location,
        instance: service.config.runnerId,
        dataRoot: service.config.storage.dataRoot,
        runsDir: service.config.runsDir,
        trainer: service.config.trainer,
      });
      expect(h.detail!.runsDir.startsWith(dataDir)).toBe(true);
    });
  });
}
