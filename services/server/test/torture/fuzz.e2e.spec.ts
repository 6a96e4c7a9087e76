// Generated hostile input for every procedure (see fuzz.ts): only typed errors, nothing written
// for a rejected input, accepted input stored inside the datasets root and the outputs folder,
// and the server healthy afterwards. fast-check prints its seed and the shrunk input on failure;
// replay with FUZZ_SEED=<seed>. FUZZ_RUNS sizes it (default keeps the file under a minute).
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskRecord } from '@trainyard/domain';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { DATASET, eventually, startServer, type RunningServer } from '../harness';
import { fuzzProcedures, fuzzRequestHeaders } from './fuzz';
import { callApi, killAllUnder } from './procs';

const RUNS = Number(process.env.FUZZ_RUNS ?? 600);
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;
const HEADER_RUNS = Math.max(50, Math.round(RUNS / 3));

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`fuzzed input on ${backend.kind}`, () => {
    let s: RunningServer;
    let root: string;
    let blocker: TaskRecord;
    let finished: TaskRecord;
    beforeAll(async () => {
      // A datasets root with one dataset and a symlink that leads out of it.
      root = mkdtempSync(join(tmpdir(), 'trainyard-fuzz-datasets-'));
      mkdirSync(root, { recursive: true });
      copyFileSync(DATASET, join(root, 'data.jsonl'));
      symlinkSync('/etc', join(root, 'escape'));
      s = await startServer({ backend, env: { TRAINYARD_DATASETS_ROOT: root, TRAINYARD_GPU_SLOTS: '1' } });
      const ds = join(root, 'data.jsonl');
      // One finished task (cancel → CONFLICT, delete → allowed), then a blocker that holds the only
      // slot and writes nothing more once training (so every accepted submission just queues).
      // Its trainer prints hostile output (NUL, lone surrogates, escapes, a NUL last line): the
      // fuzzed reads of its logs and events run over what that left in the store.
      const f = await callApi<TaskRecord>(s.url, 'tasks.create', {
        model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
        datasetPath: ds,
        config: { epochs: 1, simulate: { steps: 2, stepMs: 1, hostileOutput: true } },
      });
      if (!f.ok) throw new Error(f.error.message);
      finished = await eventually(
        async () => {
          const t = await callApi<TaskRecord>(s.url, 'tasks.get', { id: f.data.id });
          return t.ok && t.data.status === 'COMPLETED' ? t.data : null;
        },
        'the first task to complete',
        60_000,
      );
      const logs = await callApi<{ lines: { stream: string; line: string }[] }>(s.url, 'tasks.logs', { id: finished.id, limit: 5000 });
      if (!logs.ok || logs.data.lines.filter((l) => l.stream === 'stdout').at(-1)?.line !== 'last\uFFFDline')
        throw new Error(`hostile output not stored as expected: ${JSON.stringify(logs)}`);
      const b = await callApi<TaskRecord>(s.url, 'tasks.create', {
        model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
        datasetPath: ds,
        config: { epochs: 1, simulate: { steps: 1, stepMs: 600_000, startupMs: 0 } },
      });
      if (!b.ok) throw new Error(b.error.message);
      blocker = await eventually(
        async () => {
          const t = await callApi<TaskRecord>(s.url, 'tasks.get', { id: b.data.id });
          return t.ok && t.data.status === 'TRAINING' ? t.data : null;
        },
        'the blocker to train',
        60_000,
      );
    });
    afterAll(async () => {
      if (blocker) {
        await callApi(s.url, 'tasks.cancel', { id: blocker.id });
        await eventually(
          async () => {
            const t = await callApi<TaskRecord>(s.url, 'tasks.get', { id: blocker.id });
            return t.ok && t.data.status === 'CANCELLED';
          },
          'the blocker to be cancelled',
          30_000,
        ).catch(() => {});
      }
      const dataDir = s?.dataDir;
      await s?.dispose();
      // dispose() kills shepherds (their argv names the run folder) but not trainers (theirs does not).
      if (dataDir) killAllUnder([dataDir]);
      rmSync(root, { recursive: true, force: true });
    });

    it(`${RUNS} generated calls: typed errors only, nothing written when refused, the server stays up`, async () => {
      const stats = await fuzzProcedures(
        {
          url: s.url,
          datasetsRoot: root,
          dataset: join(root, 'data.jsonl'),
          outputsRoot: join(s.dataDir, 'outputs'),
          knownIds: [finished.id],
        },
        { numRuns: RUNS, seed: SEED, log: (m) => console.log(`[${backend.kind}] ${m}`) },
      );
      expect(stats.tried).toBeGreaterThanOrEqual(RUNS);
      expect(s.proc.exitCode).toBeNull();
      const h = await callApi<{ ok: boolean }>(s.url, 'system.health', undefined);
      expect(h.ok && h.data.ok).toBe(true);
      const b = await callApi<TaskRecord>(s.url, 'tasks.get', { id: blocker.id });
      expect(b.ok && b.data.status).toBe('TRAINING');
    });

    it(`${HEADER_RUNS} generated hostile Host/Origin/Sec-Fetch-Site/Content-Type requests: all refused (421/403/415), nothing written`, async () => {
      const byStatus = await fuzzRequestHeaders(
        {
          url: s.url,
          datasetsRoot: root,
          dataset: join(root, 'data.jsonl'),
          outputsRoot: join(s.dataDir, 'outputs'),
          knownIds: [finished.id],
        },
        { numRuns: HEADER_RUNS, seed: SEED, log: (m) => console.log(`[${backend.kind}] ${m}`) },
      );
      // Each refusal was generated, not only the first in line.
      for (const status of ['421', '403', '415']) expect(byStatus[status] ?? 0, status).toBeGreaterThan(0);
      expect(s.proc.exitCode).toBeNull();
    });
  });
}
