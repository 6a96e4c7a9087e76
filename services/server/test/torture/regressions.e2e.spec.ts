// Regression specs for defects the torture runs found, each set up deterministically instead of
// waiting for the chaos to hit the window again.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_RESOURCES, isTerminal, uniformInventory, type TaskRecord, type TaskSpec } from '@trainyard/domain';
import { configureDevices, openDatabase, TaskStore } from '@trainyard/store';
import { backendAvailable, backends, freshSchemaName, type Backend } from '@trainyard/store/testing';
import { loadConfig } from '../../src/config';
import { newTaskId } from '../../src/service';
import { readProcessStartTime } from '../../src/trainer/proc';
import { readTrainerInfo, SHEPHERD_PATH } from '../../src/trainer/run';
import { DATASET, eventually, REPO_ROOT, startServer, type RunningServer } from '../harness';
import { callApi, openSubscription, scanProcesses, ServerProc, StartRefused, stillAlive } from './procs';

const spec = (name: string): TaskSpec => ({
  name,
  model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
  datasetPath: DATASET,
  outputDir: name,
  resources: { ...DEFAULT_RESOURCES },
  config: {
    epochs: 1,
    batchSize: 1,
    gradientAccumulation: 1,
    learningRate: 2e-4,
    maxLength: 512,
    load8bit: false,
    load4bit: false,
    loraRank: 8,
    loraAlpha: 16,
    simulate: { steps: 3, stepMs: 50 },
  },
  timeoutMs: 600_000,
  owner: 'e2e',
  idempotencyKey: null,
});

/**
 * The state a service leaves when it is SIGKILLed between writing a run's launch.json and the
 * shepherd reporting its trainer: the task holds the slot (PREPARING, assigned to this service),
 * its run folder has task.json and launch.json, and nothing else.
 */
async function killedMidLaunch(
  backend: Backend,
): Promise<{ dataDir: string; schema: string | undefined; task: TaskRecord; runDir: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'trainyard-regress-'));
  const schema = backend.kind === 'postgres' ? freshSchemaName() : undefined;
  const env: Record<string, string> = { TRAINYARD_DATA_DIR: dataDir, TRAINYARD_GPU_SLOTS: '1' };
  if (backend.url) Object.assign(env, { DATABASE_URL: backend.url, TRAINYARD_DB_SCHEMA: schema });
  const config = loadConfig(env);
  const database = await openDatabase(config.storage);
  let task: TaskRecord;
  try {
    await configureDevices(database.db, uniformInventory(1));
    const store = new TaskStore(database, { runnerId: config.runnerId });
    const r = await store.submit(newTaskId(), spec('mid-launch'), { actor: 'e2e' });
    task = r.task;
  } finally {
    await database.close();
  }
  expect(task.status).toBe('PREPARING');
  const runDir = join(config.runsDir, task.id, `attempt-${task.attempt}`);
  const outputDir = join(dataDir, 'outputs', task.spec.outputDir);
  mkdirSync(runDir, { recursive: true });
  const specFile = join(runDir, 'task.json');
  writeFileSync(specFile, JSON.stringify({ id: task.id, ...task.spec, outputDir }));
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('TRAINYARD_') && k !== 'DATABASE_URL') childEnv[k] = v;
  writeFileSync(
    join(runDir, 'launch.json'),
    JSON.stringify({
      argv: [process.execPath, join(REPO_ROOT, 'trainers/simulated-trainer.mjs')],
      env: {
        ...childEnv,
        TRAINYARD_TASK_SPEC: specFile,
        TRAINYARD_TASK_ID: task.id,
        TRAINYARD_OUTPUT_DIR: outputDir,
        CUDA_VISIBLE_DEVICES: '0',
      },
      cwd: REPO_ROOT,
      maxLineBytes: 4096,
      maxLinesPerSecond: 200,
    }),
  );
  return { dataDir, schema, task, runDir };
}

async function eventTypes(s: RunningServer, id: string): Promise<string[]> {
  return (await s.client.events.list.query({ taskId: id, limit: 1000 })).events.map((e) => e.type);
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`torture regressions on ${backend.kind}`, () => {
    let s: RunningServer | undefined;
    afterEach(async () => {
      await s?.dispose();
      s = undefined;
    });

    /** A service on a killed one's data (one slot), until the task ends: it must complete cleanly. */
    async function restartUntilEnded(dataDir: string, schema: string | undefined, taskId: string) {
      s = await startServer({ backend, dataDir, ...(schema ? { schema } : {}), env: { TRAINYARD_GPU_SLOTS: '1' } });
      const done = await eventually(
        async () => {
          const t = await s!.client.tasks.get.query({ id: taskId });
          return isTerminal(t.status) ? t : null;
        },
        'the task to end',
        60_000,
      );
      expect(done.error?.message ?? null).toBeNull();
      expect(done.status).toBe('COMPLETED');
      return done;
    }

    it('unknown fields named like Object.prototype members: BAD_REQUEST naming them (was: 500 "push is not a function")', async () => {
      s = await startServer({ backend });
      for (const key of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
        for (const [proc, body, field] of [
          ['tasks.cancel', `{"id":"tnone",${JSON.stringify(key)}:{}}`, key],
          ['tasks.create', `{"model":"m","datasetPath":${JSON.stringify(DATASET)},"config":{${JSON.stringify(key)}:1}}`, `config.${key}`],
          ['tasks.list', `{${JSON.stringify(key)}:[1]}`, key],
        ] as const) {
          const r = await callApi(s.url, proc, undefined, { rawBody: body });
          expect(r.ok, `${proc} ${body}`).toBe(false);
          if (r.ok) continue;
          expect(r.error.code, `${proc} ${body}: ${r.error.message}`).toBe('BAD_REQUEST');
          expect(r.error.fieldErrors?.[field], `${proc} ${body}`).toEqual([`${key} is not a known field`]);
        }
      }
      const h = await callApi<{ ok: boolean }>(s.url, 'system.health', undefined);
      expect(h.ok && h.data.ok).toBe(true);
    });

    it('what the fuzzer found: each answers BAD_REQUEST / NOT_FOUND naming the field (was: 500, or accepted)', async () => {
      const root = mkdtempSync(join(tmpdir(), 'trainyard-regress-datasets-'));
      copyFileSync(DATASET, join(root, 'data.jsonl'));
      symlinkSync('/etc', join(root, 'escape'));
      try {
        s = await startServer({ backend, env: { TRAINYARD_DATASETS_ROOT: root } });
        const good = {
          model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
          datasetPath: join(root, 'data.jsonl'),
          config: { epochs: 1, simulate: { steps: 1, stepMs: 1 } },
        };
        const cursor = (parts: unknown[]) => Buffer.from(JSON.stringify(parts)).toString('base64url');
        const cases: [string, unknown, string, string][] = [
          // a symlink inside TRAINYARD_DATASETS_ROOT that leads out of it
          ['tasks.create', { ...good, datasetPath: join(root, 'escape') }, 'BAD_REQUEST', 'datasetPath'],
          ['tasks.create', { ...good, datasetPath: join(root, 'escape/passwd') }, 'BAD_REQUEST', 'datasetPath'],
          // unpaired UTF-16 surrogates (jsonb refuses them)
          ['tasks.create', { ...good, idempotencyKey: 'k\udfff' }, 'BAD_REQUEST', 'idempotencyKey'],
          ['tasks.create', { ...good, name: '\ud800name' }, 'BAD_REQUEST', 'name'],
          ['tasks.cancel', { id: 'tnone', reason: 'r\ud83e' }, 'BAD_REQUEST', 'reason'],
          // forged list cursors: a year Postgres does not have, a NUL in the id
          ['tasks.list', { cursor: cursor(['0000-12-31T23:59:59.999Z', 't1']) }, 'BAD_REQUEST', 'cursor'],
          ['tasks.list', { cursor: cursor(['+275760-09-13T00:00:00.000Z', 't1']) }, 'BAD_REQUEST', 'cursor'],
          ['tasks.list', { cursor: cursor(['2026-01-01T00:00:00.000Z', 't\u0000']) }, 'BAD_REQUEST', 'cursor'],
          ['tasks.list', { cursor: cursor(['2026-01-01', 't1']) }, 'BAD_REQUEST', 'cursor'],
          // log positions past bigint, times in the year 0000
          ['events.list', { cursor: '9223372036854775808' }, 'BAD_REQUEST', 'cursor'],
          ['events.list', { cursor: '9999999999999999999' }, 'BAD_REQUEST', 'cursor'],
          ['events.list', { from: '0000-01-01T00:00:00Z' }, 'BAD_REQUEST', 'from'],
          ['events.list', { to: '0000-06-01T00:00:00+01:00' }, 'BAD_REQUEST', 'to'],
          ['events.replay', { taskId: 'tnone', atTime: '0000-01-01T00:00:00Z' }, 'BAD_REQUEST', 'atTime'],
          ['events.list', { from: '9999-12-31T23:59:59-14:00' }, 'BAD_REQUEST', 'from'],
        ];
        for (const [proc, input, code, field] of cases) {
          const r = await callApi(s.url, proc, input);
          const what = `${proc} ${JSON.stringify(input)}`;
          expect(r.ok, what).toBe(false);
          if (r.ok) continue;
          expect(r.error.code, `${what}: ${r.error.message}`).toBe(code);
          expect(Object.keys(r.error.fieldErrors ?? {}), what).toContain(field);
        }
        // The edges that are fine stay fine.
        expect((await callApi(s.url, 'events.list', { cursor: '9223372036854775807' })).ok).toBe(true);
        expect((await callApi(s.url, 'events.list', { from: '0001-01-01T00:00:00Z' })).ok).toBe(true);
        // An offset Postgres would refuse (it stops at ±15:59) is the same instant in UTC.
        expect((await callApi(s.url, 'events.list', { to: '2026-01-01T00:00:00-23:59' })).ok).toBe(true);
        const replay = await callApi(s.url, 'events.replay', { taskId: 'tnone', atTime: '2026-01-01T00:00:00+23:59' });
        expect(replay.ok ? 'ok' : replay.error.code).toBe('NOT_FOUND');
        for (let i = 0; i < 3; i++) expect((await callApi(s.url, 'tasks.create', { ...good, name: `名前 🦜 ${i}` })).ok).toBe(true);
        const page = await callApi<{ items: TaskRecord[]; nextCursor: string | null }>(s.url, 'tasks.list', { limit: 2 });
        expect(page.ok && page.data.nextCursor).toBeTruthy();
        const next = await callApi<{ items: TaskRecord[] }>(s.url, 'tasks.list', {
          limit: 2,
          cursor: page.ok ? page.data.nextCursor : null,
        });
        expect(next.ok && next.data.items.length).toBe(1);
        // Subscriptions: their errors are typed too.
        const unknown = await openSubscription(s.url, 'tasks.onLogs', JSON.stringify({ id: 'tnone' }), 3000);
        expect(unknown.errorCode).toBe('NOT_FOUND');
        const far = await openSubscription(s.url, 'tasks.onLogs', JSON.stringify({ id: 'tnone', lastEventId: '9999999999' }), 3000);
        expect(far.errorCode).toBe('BAD_REQUEST');
        const beyond = await openSubscription(s.url, 'tasks.onUpdate', JSON.stringify({ lastEventId: '9223372036854775808' }), 3000);
        expect(beyond.errorCode).toBe('BAD_REQUEST');
        const h = await callApi<{ ok: boolean }>(s.url, 'system.health', undefined);
        expect(h.ok && h.data.ok).toBe(true);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });

    it("a crashed service's lock naming a pid reused by another process does not block the restart (was: refused to start)", async () => {
      s = await startServer({ backend });
      const lockFile = join(s.dataDir, 'runs', '.instance.lock');
      // While it runs, a second service on the same data folder is refused.
      const second = new ServerProc({
        name: 'second',
        dataDir: s.dataDir,
        env: backend.url ? { DATABASE_URL: backend.url, TRAINYARD_DB_SCHEMA: s.schema! } : {},
      });
      const refused = await second.start().then(
        () => null,
        (e: unknown) => e,
      );
      await second.kill();
      expect(refused).toBeInstanceOf(StartRefused);
      expect((refused as StartRefused).output).toMatch(/another Trainyard service \(pid \d+\) uses/);
      await s.stop('SIGKILL');
      // pids wrap: the dead service's pid now belongs to some other process.
      const stranger = spawn('sleep', ['60'], { stdio: 'ignore' });
      try {
        writeFileSync(lockFile, readFileSync(lockFile, 'utf8').replace(/^\d+/, String(stranger.pid)));
        s = await s.restart();
        const h = await callApi<{ ok: boolean }>(s.url, 'system.health', undefined);
        expect(h.ok && h.data.ok).toBe(true);
      } finally {
        stranger.kill('SIGKILL');
      }
    });

    it('killed after launch.json, before the shepherd started: the restart launches again (was: FAILED "run directory was already used")', async () => {
      const { dataDir, schema, task } = await killedMidLaunch(backend);
      await restartUntilEnded(dataDir, schema, task.id);
      const types = await eventTypes(s!, task.id);
      expect(types.filter((t) => t === 'TrainerSpawned')).toHaveLength(1);
    });

    it('killed after handing the run to a standby shepherd (named in shepherd.json): the restart waits for it, never a second trainer', async () => {
      const { dataDir, schema, task, runDir } = await killedMidLaunch(backend);
      // The dead service's standby, handed the run but slow to take it: its argv names no folder,
      // only shepherd.json tells recovery it is this one's. It reads its stdin only once the
      // restarted service has looked at shepherd.json (its atime moves past its mtime), or the
      // file is gone (a service that ignored it and launched again), or after 20 s (noatime).
      const slowStart = [
        "const fs = require('fs'); const file = process.argv[3]; const t0 = Date.now(); let seen = false;",
        'const tick = () => { let go = Date.now() - t0 > 20000;',
        '  try { const st = fs.statSync(file); seen = true; if (st.atimeMs > st.mtimeMs) go = true; } catch { if (seen) go = true; }',
        '  if (go) import(process.argv[1]); else setTimeout(tick, 20); };',
        'tick();',
      ].join('\n');
      const standby = spawn(process.execPath, ['-e', slowStart, SHEPHERD_PATH, '--standby', join(runDir, 'shepherd.json')], {
        cwd: join(runDir, '..', '..'),
        detached: true,
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      standby.unref();
      const standbyExited = new Promise((r) => standby.once('exit', r));
      await new Promise((r) => standby.once('spawn', r));
      writeFileSync(join(runDir, 'shepherd.json'), JSON.stringify({ pid: standby.pid, startTime: readProcessStartTime(standby.pid!) }));
      standby.stdin!.end(`${runDir}\n`); // then the "service" is gone: its end of the pipe closes
      const done = await restartUntilEnded(dataDir, schema, task.id);
      // Once the standby is done too, the trainer its folder records is still the one the task
      // records (a second launch beside it would have had the standby start another trainer).
      await standbyExited;
      const reported = await readTrainerInfo(runDir);
      expect(done.trainer?.pid).toBe(reported?.pid);
      expect((await eventTypes(s!, task.id)).filter((t) => t === 'TrainerSpawned')).toHaveLength(1);
      await eventually(async () => scanProcesses([dataDir]).filter(stillAlive).length === 0, 'no process left', 15_000);
    });

    it('killed after writing shepherd.json, before handing the run to the standby: the standby exits, the restart launches again', async () => {
      const { dataDir, schema, task, runDir } = await killedMidLaunch(backend);
      const standby = spawn(process.execPath, [SHEPHERD_PATH, '--standby'], {
        cwd: join(runDir, '..', '..'),
        detached: true,
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      standby.unref();
      await new Promise((r) => standby.once('spawn', r));
      writeFileSync(join(runDir, 'shepherd.json'), JSON.stringify({ pid: standby.pid, startTime: readProcessStartTime(standby.pid!) }));
      const exited = new Promise((r) => standby.once('exit', r));
      standby.stdin!.destroy(); // the service died: no line
      await restartUntilEnded(dataDir, schema, task.id);
      await exited;
      expect((await eventTypes(s!, task.id)).filter((t) => t === 'TrainerSpawned')).toHaveLength(1);
      await eventually(async () => scanProcesses([dataDir]).filter(stillAlive).length === 0, 'no process left', 15_000);
    });

    it('killed while its shepherd was still starting: the restart waits for that shepherd and follows its trainer, never a second one (was: FAILED, and an orphan trainer)', async () => {
      const { dataDir, schema, task, runDir } = await killedMidLaunch(backend);
      // The shepherd the dead service spawned, slow to start (a node process on a busy machine).
      const slow = spawn(process.execPath, ['-e', 'setTimeout(() => import(process.argv[1]), 4000)', SHEPHERD_PATH, runDir], {
        cwd: runDir,
        detached: true,
        stdio: 'ignore',
      });
      slow.unref();
      const done = await restartUntilEnded(dataDir, schema, task.id);
      const reported = await readTrainerInfo(runDir);
      expect(done.trainer?.pid).toBe(reported?.pid); // the slow shepherd's trainer, recorded
      expect((await eventTypes(s!, task.id)).filter((t) => t === 'TrainerSpawned')).toHaveLength(1);
      // Nothing of this data folder runs any more (no second shepherd, no orphan trainer).
      await eventually(async () => scanProcesses([dataDir]).filter(stillAlive).length === 0, 'no process left', 15_000);
    });
  });
}
