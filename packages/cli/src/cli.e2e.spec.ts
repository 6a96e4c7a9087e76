// The CLI end to end: the real server (PGlite), the real `trainyard` bin as a child process,
// every verb, its --json output and its exit codes. The service has two 80 GB GPUs from a fixed
// inventory (no nvidia-smi needed), so gangs, shared tasks and waiting reasons can be seen.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTerminal } from '@trainyard/client';
import { backends } from '@trainyard/store/testing';
import { DATASET, eventually, REPO_ROOT, startServer, type RunningServer } from '@trainyard/server/testing';

const BIN = join(REPO_ROOT, 'packages/cli/bin/trainyard.mjs');
const MODEL = 'Qwen/Qwen2.5-Coder-0.5B-Instruct';
const QUICK = '{"steps":3,"stepMs":30}';
/** A trainer that runs until cancelled (well past each spec). */
const LONG = '{"steps":2000,"stepMs":100}';
const INVENTORY = '[{"name":"A100","memoryGb":80},{"name":"A100","memoryGb":80}]';
const USER = 'cli-e2e';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `trainyard ...args` as a child process against `url`. */
function cli(url: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      {
        cwd: REPO_ROOT,
        env: { ...process.env, TRAINYARD_URL: url, TRAINYARD_USER: USER, ...env },
        timeout: 180_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(new Error(`trainyard ${args.join(' ')}: ${err.message}\n${stderr}`));
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

function describeRun(args: string[], r: Run): string {
  return `trainyard ${args.join(' ')} exited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
}

/** A port where nothing listens. */
async function deadPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

// PGlite only: the CLI talks to the API, which is the same over both backends.
const backend = backends().find((b) => b.kind === 'pglite')!;

describe('trainyard CLI (PGlite)', { timeout: 240_000 }, () => {
  let s: RunningServer;
  /** Runs the CLI and checks the exit code. */
  const run = async (args: string[], expectCode = 0, env?: Record<string, string>) => {
    const r = await cli(s.url, args, env);
    const serverGone = s.proc.exitCode !== null || s.proc.signalCode !== null;
    const why = serverGone
      ? `\nthe server is gone (${s.proc.exitCode ?? s.proc.signalCode}); its last output:\n${s.output.slice(-40).join('\n')}`
      : '';
    expect(r.code, describeRun(args, r) + why).toBe(expectCode);
    return r;
  };
  /** Runs the CLI with --json and parses stdout (which must be one JSON document). */
  const json = async <T = any>(args: string[], expectCode = 0): Promise<T> => {
    const r = await run([...args, '--json'], expectCode);
    try {
      return JSON.parse(r.stdout) as T;
    } catch (err) {
      throw new Error(`stdout is not one JSON document (${(err as Error).message}):\n${describeRun(args, r)}`, { cause: err });
    }
  };
  const submitArgs = (sim: string, extra: string[] = []) => [
    'submit',
    '--model',
    MODEL,
    '--dataset',
    DATASET,
    '--epochs',
    '1',
    '--simulate',
    sim,
    ...extra,
  ];

  /** No task holds a device or waits in the queue. */
  const idle = () =>
    eventually(
      async () => {
        const q = await s.client.queue.get.query();
        return q.queued.length === 0 && q.devices.every((d) => d.holders.length === 0);
      },
      'the queue to drain',
      120_000,
      200,
    );
  /** The task once it holds its devices. */
  const placed = (id: string) =>
    eventually(
      async () => {
        const t = await s.client.tasks.get.query({ id });
        return t.devices.length ? t : null;
      },
      `task ${id} to take its devices`,
      120_000,
      200,
    );
  /** Cancels every task not yet ended, and waits for them to end (so a failed spec leaves none behind). */
  const cancelOpen = async () => {
    const open = (await s.client.tasks.list.query({ status: ['QUEUED', 'PREPARING', 'TRAINING'], limit: 200 })).items;
    for (const t of open) await s.client.tasks.cancel.mutate({ id: t.id }).catch(() => {});
    for (const t of open) await settled(t.id);
  };
  const settled = (id: string) =>
    eventually(async () => isTerminal((await s.client.tasks.get.query({ id })).status), `task ${id} to end`, 120_000, 200);

  let completed: any; // a task followed to COMPLETED
  let failed: any; // a task followed to FAILED

  beforeAll(async () => {
    // A service with the default datasets folder only (as `npm start` runs): the CLI uploads its
    // local dataset files, as README's quick start does.
    s = await startServer({ backend, env: { TRAINYARD_DATASETS_ROOT: '', TRAINYARD_GPU_INVENTORY: INVENTORY } });
  }, 120_000);
  afterAll(async () => {
    await s?.dispose();
  });

  it('--help documents the verbs and exit codes; --version prints the version', async () => {
    const r = await run(['--help']);
    for (const verb of ['submit', 'ls', 'show', 'logs', 'cancel', 'delete', 'queue', 'gpu', 'events', 'replay', 'health'])
      expect(r.stdout).toContain(`  ${verb} `);
    expect(r.stdout).toContain('Exit codes');
    for (const code of ['0', '1', '2', '3', '4', '5', '6']) expect(r.stdout).toMatch(new RegExp(`^  ${code}  `, 'm'));
    expect((await run(['--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    expect((await run(['submit', '--help'])).stdout).toContain('--preset');
  });

  it('health', async () => {
    const h = await json(['health']);
    expect(h).toMatchObject({ ok: true, storage: 'pglite', database: 'up' });
    const r = await run(['health']);
    expect(r.stdout).toContain(`at ${s.url}: ok`);
  });

  it('submit --follow of a task that completes exits 0 and prints the task as it ended', async () => {
    completed = await json(submitArgs(QUICK, ['--name', 'cli-complete', '--follow']));
    expect(completed).toMatchObject({ status: 'COMPLETED', created: true, spec: { name: 'cli-complete', owner: USER } });
    expect(completed.progress.percent).toBe(100);
    expect(completed.artifacts).toHaveLength(1);
    expect(completed.warnings.map((w: { code: string }) => w.code)).toContain('NO_GPU');
  });

  it('submit --follow of a task that fails exits 1 with the error', async () => {
    const r = await run(submitArgs('{"failAtStep":2,"stepMs":20}', ['--name', 'cli-fail', '--follow']), 1);
    expect(r.stdout).toMatch(/^submitted task (\S+) \(cli-fail\)$/m);
    expect(r.stdout).toMatch(/FAILED \(exit code 1\)/);
    expect(r.stdout).toContain('simulated failure at step 2');
    expect(r.stderr).toContain('warning [high] NO_GPU');
    const id = /^submitted task (\S+)/m.exec(r.stdout)![1]!;
    failed = await json(['show', id]);
    expect(failed).toMatchObject({ id, status: 'FAILED', error: { reason: 'exit', exitCode: 1 } });
  });

  it('submit prints id, status, queue position and warnings; presets and explicit flags; idempotency key', async () => {
    const human = await run(submitArgs(QUICK, ['--name', 'cli-human']));
    expect(human.stdout).toMatch(/^submitted task \S+ \(cli-human\)$/m);
    expect(human.stdout).toMatch(/^status: (QUEUED|PREPARING|TRAINING|COMPLETED)/m);
    expect(human.stderr).toMatch(/^warning \[high\] NO_GPU: /m);

    const args = submitArgs(QUICK, [
      '--preset',
      'performance',
      '--batch-size',
      '3',
      '--8bit',
      '--lr',
      '1e-4',
      '--lora-rank',
      '4',
      '--lora-alpha',
      '8',
      '--timeout',
      '90s',
      '--name',
      'cli-preset',
      '--output-dir',
      'cli/preset',
      '--idempotency-key',
      'cli-key-1',
    ]);
    const t = await json(args);
    expect(t).toMatchObject({
      created: true,
      spec: {
        name: 'cli-preset',
        timeoutMs: 90_000,
        idempotencyKey: 'cli-key-1',
        config: {
          batchSize: 3,
          gradientAccumulation: 4,
          maxLength: 2048,
          load8bit: true,
          learningRate: 1e-4,
          loraRank: 4,
          loraAlpha: 8,
          epochs: 1,
        },
      },
    });
    expect(t).toHaveProperty('queuePosition');
    // Outputs nest under the task's id; the dataset was uploaded from this machine.
    expect(t.spec.outputDir).toBe(`${t.id}/cli/preset`);
    expect(t.spec.datasetPath.startsWith(join(s.dataDir, 'datasets', 'uploads') + '/')).toBe(true);
    expect(Array.isArray(t.warnings)).toBe(true);
    const again = await json(args);
    expect(again).toMatchObject({ id: t.id, created: false });

    const safe = await json(submitArgs(QUICK, ['--preset', 'safe', '--max-length', '256']));
    expect(safe.spec.config).toMatchObject({ batchSize: 1, gradientAccumulation: 16, maxLength: 256 });
    const balanced = await json(submitArgs(QUICK, ['--preset', 'balanced', '--4bit']));
    expect(balanced.spec.config).toMatchObject({ batchSize: 2, gradientAccumulation: 8, maxLength: 1024, load4bit: true, load8bit: false });
    for (const id of [t.id, safe.id, balanced.id]) await settled(id);
    expect((await s.client.tasks.get.query({ id: t.id })).status).toBe('COMPLETED');
  });

  it('ls: table, --status, --limit, cursors and --all', async () => {
    const all = await json<{ items: any[]; nextCursor: string | null }>(['ls', '--all', '--limit', '2']);
    expect(all.nextCursor).toBeNull();
    const ids = all.items.map((t) => t.id);
    expect(ids).toEqual(expect.arrayContaining([completed.id, failed.id]));
    expect(new Set(ids).size).toBe(ids.length);

    const page = await json<{ items: any[]; nextCursor: string | null }>(['ls', '--limit', '1']);
    expect(page.items).toHaveLength(1);
    expect(page.nextCursor).toEqual(expect.any(String));
    const next = await json<{ items: any[] }>(['ls', '--limit', '1', '--cursor', page.nextCursor!]);
    expect(next.items[0].id).not.toBe(page.items[0].id);

    const onlyFailed = await json<{ items: any[] }>(['ls', '--status', 'failed']);
    expect(onlyFailed.items.map((t) => t.id)).toEqual([failed.id]);
    const two = await json<{ items: any[] }>(['ls', '--status', 'FAILED,COMPLETED', '--all']);
    expect(two.items.every((t) => ['FAILED', 'COMPLETED'].includes(t.status))).toBe(true);

    const table = await run(['ls', '--limit', '200']);
    const header = table.stdout.split('\n')[0]!;
    expect(header).toMatch(/^ID\s+NAME\s+STATUS\s+PROGRESS\s+QUEUE\/DEVICES\s+REQUEST\s+CREATED\s+FINISHED\s+RAN\s+GPU-H\s+ETA$/);
    // A finished task holds no device any more.
    expect(table.stdout).toMatch(new RegExp(`^${completed.id}\\s+cli-complete\\s+COMPLETED\\s+100%.*\\s+-\\s+1 GPU\\s+\\d`, 'm'));
  });

  it('show: all fields, the multi-line error, artifacts', async () => {
    const t = await json(['show', completed.id]);
    expect(t).toMatchObject({ id: completed.id, status: 'COMPLETED', artifacts: completed.artifacts });
    const human = await run(['show', completed.id]);
    expect(human.stdout).toMatch(/^status:\s+COMPLETED$/m);
    expect(human.stdout).toMatch(/^request:\s+1 GPU$/m);
    expect(human.stdout).toMatch(/^devices:\s+-$/m);
    expect(human.stdout).toMatch(/^artifacts:$/m);
    expect(human.stdout).toContain(`    ${completed.artifacts[0]}`);
    const f = await run(['show', failed.id]);
    expect(f.stdout).toMatch(/^error:\s+exit code 1$/m);
    expect(f.stdout).toMatch(/^ {4}Traceback \(most recent call last\):$/m);
    expect(f.stdout).toMatch(/^ {4}RuntimeError: CUDA out of memory \(simulated failure at step 2\)$/m);
  });

  it('logs: stored lines; -f of a finished task ends with its outcome', async () => {
    const doc = await json<{ id: string; lines: { seq: number; line: string }[] }>(['logs', completed.id]);
    expect(doc.id).toBe(completed.id);
    expect(doc.lines.some((l) => l.line.startsWith('saved adapter to'))).toBe(true);
    // Protocol lines (JSON messages to the service) are not part of the log.
    expect(doc.lines.some((l) => l.line.startsWith('{'))).toBe(false);
    const plain = await run(['logs', completed.id]);
    expect(plain.stdout.trimEnd().split('\n')).toEqual(doc.lines.map((l) => l.line));
    await run(['logs', '-f', completed.id], 0);
    const f = await run(['logs', '--follow', failed.id], 1);
    expect(f.stdout).toContain('RuntimeError: CUDA out of memory');
  });

  it('logs -f follows a running task live to its end, each line once', async () => {
    const t = await json(submitArgs('{"steps":6,"stepMs":250,"logLinesPerStep":2,"startupMs":300}', ['--name', 'cli-live']));
    const live = await run(['logs', '-f', t.id, '--json'], 0);
    const streamed = live.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number; line: string });
    const stored = (await json<{ lines: { seq: number; line: string }[] }>(['logs', t.id])).lines;
    expect(streamed.map((l) => l.seq)).toEqual(stored.map((l) => l.seq));
    expect(streamed.filter((l) => /^step \d+ log \d\/2$/.test(l.line))).toHaveLength(12);
    const human = await run(['logs', '-f', t.id]);
    expect(human.stdout).toContain('saved adapter to');
  });

  it('cancel of a followed task: the follower exits 3; cancelling a finished task exits 5', async () => {
    const follower = cli(s.url, submitArgs('{"steps":2000,"stepMs":100}', ['--name', 'cli-cancel-me', '--follow']));
    const task = await eventually(
      async () => {
        const r = await cli(s.url, ['ls', '--json', '--status', 'PREPARING,TRAINING']);
        return (JSON.parse(r.stdout).items as any[]).find((x) => x.spec.name === 'cli-cancel-me') ?? null;
      },
      'the followed task to start',
      120_000,
      300,
    );
    const c = await json(['cancel', task.id, '--reason', 'e2e says stop']);
    expect(c.id).toBe(task.id);
    expect(c.stop ?? c.cancelReason).toBeTruthy();
    const f = await follower;
    expect(f.code, describeRun(['submit', '--follow'], f)).toBe(3);
    expect(f.stdout).toContain(`task ${task.id} CANCELLED`);
    const after = await json(['show', task.id]);
    expect(after).toMatchObject({ status: 'CANCELLED' });

    const conflict = await run(['cancel', completed.id], 5);
    expect(conflict.stderr).toContain(`cannot cancel task ${completed.id}: it is COMPLETED`);
    expect(conflict.stdout).toBe('');

    const queuedCancel = await json(submitArgs(QUICK, ['--name', 'cli-cancel-human']));
    const human = await cli(s.url, ['cancel', queuedCancel.id]);
    // Cancelled at once, asked to stop, or already finished (exit 5): never anything else.
    expect([0, 5]).toContain(human.code);
  });

  it('delete: removes a finished task; a running one is a conflict', async () => {
    const d = await json(['delete', failed.id]);
    expect(d).toEqual({ id: failed.id, deleted: true });
    const gone = await run(['show', failed.id], 4);
    // Said to be deleted, when and by whom (its history stays in the log).
    expect(gone.stderr).toContain(`task ${failed.id} was deleted at `);
    expect(gone.stderr).toContain(`by ${USER}; its history stays: \`trainyard events --task ${failed.id}\``);
    const t = await json(submitArgs('{"steps":2000,"stepMs":100}', ['--name', 'cli-running']));
    const r = await run(['delete', t.id], 5);
    expect(r.stderr).toContain('only finished tasks');
    await run(['cancel', t.id]);
    await settled(t.id);
    const human = await run(['delete', completed.id]);
    expect(human.stdout).toContain(`deleted task ${completed.id}`);
  });

  it("queue: devices with their holders, queued tasks with why each waits, the head's reservation; a short task backfills", async () => {
    try {
      await idle();
      // One GPU busy for at most 10 minutes; a 2-GPU task waits for it, first in the queue.
      const running = await json(submitArgs(LONG, ['--name', 'cli-q-running', '--timeout', '10m']));
      expect((await placed(running.id)).devices.map((d) => d.deviceId)).toEqual(['gpu0']);
      const head = await json(submitArgs(LONG, ['--name', 'cli-q-head', '--gpus', '2', '--timeout', '30m']));
      expect(head).toMatchObject({ status: 'QUEUED', queuePosition: 1, spec: { resources: { gpus: 2, shared: false } } });
      // A task whose timeout runs past the head's reserved start could delay it: it waits though GPU 1 is free.
      const patient = await json(submitArgs(QUICK, ['--name', 'cli-q-patient', '--timeout', '1h']));
      expect(patient.queuePosition).toBe(2);

      const q = await json(['queue']);
      expect(q.policy).toBe('backfill');
      expect(q.devices.map((d: any) => [d.id, d.name, d.memoryGb, d.present, d.blockedReason])).toEqual([
        ['gpu0', 'A100', 80, true, null],
        ['gpu1', 'A100', 80, true, null],
      ]);
      expect(q.devices[0].holders).toEqual([expect.objectContaining({ taskId: running.id, memoryGb: 80, exclusive: true })]);
      expect(q.devices[0].holders[0].task.spec.name).toBe('cli-q-running');
      expect(q.devices[1].holders).toEqual([]);
      expect(q.queued.map((e: any) => [e.position, e.task.id, e.reason.code])).toEqual([
        [1, head.id, 'WAITING_FOR_DEVICES'],
        [2, patient.id, 'RESERVED_FOR_HEAD'],
      ]);
      expect(q.queued[0].reason.message).toMatch(/^Needs 2 GPUs, 1 free\. First in the queue: reserved gpu0, gpu1 from \d\d:\d\d UTC/);
      expect(q.queued[1].reason.message).toMatch(new RegExp(`^GPU 0, GPU 1 are reserved for task ${head.id} from \\d\\d:\\d\\d UTC`));
      expect(q.reservation).toMatchObject({ taskId: head.id, deviceIds: ['gpu0', 'gpu1'] });
      expect(q).toHaveProperty('warning');

      const human = await run(['queue']);
      expect(human.stdout).toMatch(/^devices \(2, policy backfill\):$/m);
      expect(human.stdout).toMatch(/^DEVICE\s+NAME\s+MEMORY\s+OTHER PROGRAMS\s+TASK\s+HOLDS\s+TASK NAME\s+STATUS\s+PROGRESS$/m);
      expect(human.stdout).toMatch(
        new RegExp(`^gpu0\\s+A100\\s+80 GB\\s+0 GB\\s+${running.id}\\s+whole \\(80 GB\\)\\s+cli-q-running\\s+(PREPARING|TRAINING)`, 'm'),
      );
      expect(human.stdout).toMatch(/^gpu1\s+A100\s+80 GB\s+0 GB\s+\(free\)\s+-\s+-\s+-\s+-$/m);
      expect(human.stdout).toMatch(
        new RegExp(`^\\s*1\\s+${head.id}\\s+cli-q-head\\s+${USER}\\s+2 GPUs\\s+.+\\s+WAITING_FOR_DEVICES: Needs 2 GPUs, 1 free\\.`, 'm'),
      );
      expect(human.stdout).toMatch(
        new RegExp(
          `^\\s*2\\s+${patient.id}\\s+cli-q-patient\\s+${USER}\\s+1 GPU\\s+.+\\s+RESERVED_FOR_HEAD: GPU 0, GPU 1 are reserved for task ${head.id}`,
          'm',
        ),
      );
      expect(human.stdout).toMatch(new RegExp(`^reservation: task ${head.id} starts on gpu0, gpu1 by .+ at the latest`, 'm'));
      // show and ls of queued tasks: the request, the place in the queue and why it waits.
      const shown = await run(['show', patient.id]);
      expect(shown.stdout).toMatch(/^queue position:\s+2$/m);
      expect(shown.stdout).toMatch(new RegExp(`^waits:\\s+RESERVED_FOR_HEAD: GPU 0, GPU 1 are reserved for task ${head.id}`, 'm'));
      const ls = await run(['ls', '--status', 'QUEUED']);
      expect(ls.stdout).toMatch(new RegExp(`^${head.id}\\s+cli-q-head\\s+QUEUED\\s+0%\\s+queue #1\\s+2 GPUs`, 'm'));
      expect(ls.stdout).toMatch(new RegExp(`^${patient.id}\\s+cli-q-patient\\s+QUEUED\\s+0%\\s+queue #2\\s+1 GPU`, 'm'));

      // A task that ends (by its timeout) before the head's reserved start backfills on GPU 1,
      // ahead of both; its assignment records why.
      const short = await json(submitArgs(QUICK, ['--name', 'cli-q-short', '--timeout', '2m', '--follow']));
      expect(short.status).toBe('COMPLETED');
      const { events } = await json<{ events: any[] }>(['events', '--task', short.id, '--type', 'TaskAssigned']);
      expect(events[0].data).toMatchObject({
        devices: [{ deviceId: 'gpu1', exclusive: true }],
        grounds: { policy: 'backfill', backfilled: true, ahead: 2, reservation: { taskId: head.id, deviceIds: ['gpu0', 'gpu1'] } },
      });
      const assigned = await run(['events', '--task', short.id, '--type', 'TaskAssigned']);
      expect(assigned.stdout).toContain(
        `gpu1, attempt 1; backfilled ahead of 2 tasks without delaying task ${head.id} (reserved gpu0, gpu1 from `,
      );
      expect(assigned.stdout).toMatch(/\) \(backfill\)$/m);

      // The GPU frees: the gang starts on both GPUs, ahead of the patient one.
      await run(['cancel', running.id]);
      expect((await placed(head.id)).devices.map((d) => d.deviceId)).toEqual(['gpu0', 'gpu1']);
      const gang = await run(['show', head.id]);
      expect(gang.stdout).toMatch(/^devices:\s+gpu0\+gpu1$/m);
      expect(gang.stdout).toMatch(/^request:\s+2 GPUs$/m);
      const lsGang = await run(['ls', '--status', 'PREPARING,TRAINING']);
      expect(lsGang.stdout).toMatch(new RegExp(`^${head.id}\\s+cli-q-head\\s+(PREPARING|TRAINING)\\s+.*\\s+gpu0\\+gpu1\\s+2 GPUs\\s`, 'm'));
      const gangEvents = await run(['events', '--task', head.id, '--type', 'TaskAssigned']);
      expect(gangEvents.stdout).toMatch(/gpu0\+gpu1, attempt 1; nothing waiting ahead of it \(backfill\)$/m);
      expect((await s.client.tasks.get.query({ id: patient.id })).status).toBe('QUEUED');
      await run(['cancel', patient.id]);
      await run(['cancel', head.id]);
      await settled(running.id);
      await settled(head.id);
    } finally {
      await cancelOpen();
    }
  });

  it('submit --gpus, --gpu-memory, --shared: the request, two shared tasks on one GPU, field errors', async () => {
    try {
      await idle();
      const a = await json(submitArgs(LONG, ['--name', 'cli-shared-a', '--shared', '--gpu-memory', '12']));
      expect(a.spec.resources).toEqual({ gpus: 1, memoryMb: 12_288, shared: true, memorySource: 'given' });
      // Without a figure, a shared task's memory is the service's estimate for the model.
      const b = await run(submitArgs(LONG, ['--name', 'cli-shared-b', '--shared']));
      expect(b.stdout).toMatch(/^request: 1 GPU, shared \d+(\.\d)? GB \(estimated\)$/m);
      const bId = /^submitted task (\S+)/m.exec(b.stdout)![1]!;
      // Both fit on one GPU (best fit: the one already partly taken).
      expect((await placed(a.id)).devices).toEqual([expect.objectContaining({ deviceId: 'gpu0', memoryMb: 12_288, exclusive: false })]);
      expect((await placed(bId)).devices.map((d) => [d.deviceId, d.exclusive])).toEqual([['gpu0', false]]);

      const q = await json(['queue']);
      expect(q.devices[0].holders.map((h: any) => [h.taskId, h.exclusive]).sort()).toEqual(
        [
          [a.id, false],
          [bId, false],
        ].sort(),
      );
      const human = await run(['queue']);
      expect(human.stdout).toMatch(new RegExp(`^(gpu0\\s+A100\\s+80 GB\\s+0 GB)?\\s+${a.id}\\s+12 GB shared\\s+cli-shared-a`, 'm'));
      expect(human.stdout).toMatch(
        new RegExp(`^(gpu0\\s+A100\\s+80 GB\\s+0 GB)?\\s+${bId}\\s+\\d+(\\.\\d)? GB shared\\s+cli-shared-b`, 'm'),
      );
      expect(human.stdout).toMatch(/^gpu1\s+A100\s+80 GB\s+0 GB\s+\(free\)/m);
      const shown = await run(['show', a.id]);
      expect(shown.stdout).toMatch(/^request:\s+1 GPU, shared 12 GB$/m);
      expect(shown.stdout).toMatch(/^devices:\s+gpu0$/m);
      const assigned = await run(['events', '--task', bId, '--type', 'TaskAssigned']);
      expect(assigned.stdout).toMatch(/gpu0, attempt 1; nothing waiting ahead of it, beside 1 task on gpu0 \(backfill\)$/m);

      // Requests this host cannot meet are refused, naming the field.
      const many = await run(submitArgs(QUICK, ['--gpus', '3']), 2);
      expect(many.stderr).toMatch(/^ {2}resources\.gpus: asks for 3 GPUs but this host has 2 whole GPU\(s\)/m);
      const big = await run(submitArgs(QUICK, ['--gpu-memory', '100']), 2);
      expect(big.stderr).toMatch(/^ {2}resources\.gpuMemoryGb: 100 GB per GPU does not fit any device of this host \(largest 80 GB\)/m);
      const none = await run(submitArgs(QUICK, ['--gpus', '0']), 2);
      expect(none.stderr).toMatch(/^ {2}resources\.gpus: resources\.gpus must be at least 1 \(--gpus\)$/m);
      expect((await run(submitArgs(QUICK, ['--gpu-memory', 'lots']), 2)).stderr).toContain('"lots" is not a number');

      await run(['cancel', a.id]);
      await run(['cancel', bId]);
      await settled(a.id);
      await settled(bId);
    } finally {
      await cancelOpen();
    }
  });

  it('gpu: the probe report and the recommendation', async () => {
    const g = await json(['gpu']);
    expect(g).toMatchObject({ available: false, count: 0, devices: [] });
    expect(g.recommendation).toMatch(/No NVIDIA GPU detected/);
    const human = await run(['gpu']);
    expect(human.stdout).toContain('no usable GPU');
    expect(human.stdout).toContain(g.recommendation);
  });

  it('events: filters, cursors, JSON Lines and the table', async () => {
    const { events } = await json<{ events: any[]; nextCursor: string | null }>(['events', '--task', completed.id]);
    const types = events.map((e) => e.type);
    expect(types[0]).toBe('TaskSubmitted');
    expect(types).toEqual(expect.arrayContaining(['TaskAssigned', 'TrainingStarted', 'ProgressRecorded', 'TaskCompleted', 'TaskDeleted']));
    expect(events[0].metadata.actor).toBe(USER);

    const jsonl = await run(['events', '--task', completed.id, '--jsonl']);
    const lines = jsonl.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((e) => e.position)).toEqual(events.map((e) => e.position));

    const paged = await run(['events', '--task', completed.id, '--limit', '2', '--all', '--jsonl']);
    expect(
      paged.stdout
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l).position),
    ).toEqual(events.map((e) => e.position));
    const first = await json<{ events: any[]; nextCursor: string | null }>(['events', '--task', completed.id, '--limit', '2']);
    expect(first.events).toHaveLength(2);
    expect(first.nextCursor).toBe(events[1].position);

    const done = await json<{ events: any[] }>(['events', '--type', 'TaskCompleted', '--type', 'TaskFailed', '--all']);
    expect(done.events.length).toBeGreaterThanOrEqual(2);
    expect(done.events.every((e) => ['TaskCompleted', 'TaskFailed'].includes(e.type))).toBe(true);
    const byRunner = await json<{ events: any[] }>(['events', '--actor', 'runner', '--all']);
    expect(byRunner.events.length).toBeGreaterThan(0);
    expect(byRunner.events.every((e) => e.metadata.actor === 'runner')).toBe(true);
    const future = await json<{ events: any[] }>(['events', '--from', new Date(Date.now() + 3_600_000).toISOString()]);
    expect(future.events).toEqual([]);
    const recent = await json<{ events: any[] }>(['events', '--from', '1h', '--task', completed.id]);
    expect(recent.events.length).toBe(events.length);

    const table = await run(['events', '--task', completed.id]);
    expect(table.stdout.split('\n')[0]).toMatch(/^POSITION\s+TIME\s+TASK\s+TYPE\s+ACTOR\s+DETAIL$/);
    // The assignment: its device and why it started then.
    expect(table.stdout).toMatch(/\sTaskAssigned\s+\S+\s+gpu[01], attempt 1; nothing waiting ahead of it \(backfill\)$/m);
    expect(table.stdout).toMatch(new RegExp(`^\\s*${events[0].position}\\s+\\S+ \\S+\\s+${completed.id}\\s+TaskSubmitted\\s+${USER}`, 'm'));
  });

  it('replay: the state after each event, or at a point', async () => {
    const r = await json(['replay', completed.id]);
    const { events } = await json<{ events: any[] }>(['events', '--task', completed.id]);
    expect(r.steps.map((x: any) => x.event.position)).toEqual(events.map((e) => e.position));
    expect(r.steps[0].state.status).toBe('PENDING');
    expect(r.state).toMatchObject({ id: completed.id, deleted: true });
    const completedAt = events.find((e) => e.type === 'TaskCompleted');
    const at = await json(['replay', completed.id, '--at-position', completedAt.position]);
    expect(at.steps).toEqual([]);
    expect(at.state).toMatchObject({ status: 'COMPLETED', deleted: false });
    expect(at.event.position).toBe(completedAt.position);
    const atTime = await json(['replay', completed.id, '--at-time', events[0].recordedAt]);
    // Events committed together share a time: the state after the first commit.
    expect(atTime.state.status).toMatch(/^(PENDING|QUEUED|PREPARING)$/);

    const table = await run(['replay', completed.id]);
    expect(table.stdout.split('\n')[0]).toMatch(/^POSITION\s+TIME\s+EVENT\s+STATUS\s+PROGRESS\s+DETAIL$/);
    expect(table.stdout).toMatch(new RegExp(`^\\s*${completedAt.position}\\s+\\S+ \\S+\\s+TaskCompleted\\s+COMPLETED\\s+100%`, 'm'));
    const point = await run(['replay', completed.id, '--at-position', completedAt.position]);
    expect(point.stdout).toMatch(/^status:\s+COMPLETED$/m);
  });

  it('exit codes: usage errors (2), not found (4), unreachable (6)', async () => {
    const bad = await run(['ls', '--bogus'], 2);
    expect(bad.stderr).toContain("unknown option '--bogus'");
    expect(bad.stdout).toBe('');
    await run(['submit', '--model', MODEL], 2); // --dataset is required
    expect((await run(submitArgs(QUICK, ['--epochs', 'three']), 2)).stderr).toContain('"three" is not a whole number');
    expect((await run(submitArgs(QUICK, ['--timeout', '6 hours']), 2)).stderr).toContain('is not a duration');
    expect((await run(submitArgs('{not json'), 2)).stderr).toContain('--simulate must be a JSON object');
    await run(['bogus-verb'], 2);

    // Rejected by the server: each field error as `field: message`.
    const server = await run(submitArgs(QUICK, ['--batch-size', '999', '--lr', '5']), 2);
    expect(server.stderr).toMatch(/^ {2}config\.batchSize: batchSize must be at most 256/m);
    expect(server.stderr).toMatch(/^ {2}config\.learningRate: learningRate must be at most 1/m);
    const noDataset = await run(['submit', '--model', MODEL, '--dataset', '/no/such/dataset.jsonl'], 2);
    expect(noDataset.stderr).toMatch(/^ {2}datasetPath: dataset \/no\/such\/dataset\.jsonl not found or not allowed/m);
    // Not uploaded, a local file outside the service's datasets folders gets the same answer.
    const notUploaded = await run(['submit', '--model', MODEL, '--dataset', DATASET, '--no-upload'], 2);
    expect(notUploaded.stderr).toContain(`  datasetPath: dataset ${DATASET} not found or not allowed`);
    // Uploaded, a file that is not JSON lines is refused by the upload, naming the line.
    const notJson = join(mkdtempSync(join(tmpdir(), 'trainyard-cli-')), 'bad.jsonl');
    writeFileSync(notJson, '{"text":"ok"}\nnot json\n');
    const refused = await run(['submit', '--model', MODEL, '--dataset', notJson], 2);
    expect(refused.stderr).toMatch(/^ {2}datasetPath: bad\.jsonl: line 2 is not JSON/m);
    await run(['events', '--from', 'yesterday'], 2);

    const missing = await run(['show', 'nonexistent'], 4);
    expect(missing.stderr).toContain('task nonexistent was not found');
    expect((await cli(s.url, ['show', 'nonexistent', '--json'])).stdout).toBe('');
    await run(['logs', 'nonexistent'], 4);
    await run(['cancel', 'nonexistent'], 4);
    await run(['replay', 'nonexistent'], 4);

    const url = `http://127.0.0.1:${await deadPort()}`;
    const down = await cli(url, ['ls']);
    expect(down.code, describeRun(['ls'], down)).toBe(6);
    expect(down.stderr).toContain(`cannot reach Trainyard at ${url}: is it running? start it with \`npm start\``);
    const flag = await cli(s.url, ['--url', url, 'health', '--json']);
    expect(flag.code).toBe(6);
    expect(flag.stdout).toBe('');
  });
});
