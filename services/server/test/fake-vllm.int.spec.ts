// The scripted vllm started with the argv the service builds: it must accept it (it refuses any
// flag vLLM does not document, as argparse would) and answer vLLM's routes.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { vllmServeArgv, vllmServeEnv } from '../src/deployments/vllm-argv';
import { pathWithFakeVllm } from './fake-vllm';

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

function start(argv: string[], env: Record<string, string>): { child: ChildProcess; exit: Promise<number | null>; stderr: () => string } {
  const child = spawn('vllm', argv, { env: { ...process.env, PATH: pathWithFakeVllm(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.resume();
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exit, stderr: () => err };
}

async function untilUp(base: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${base}/health`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${base} never answered /health`);
}

describe('scripted vllm', () => {
  it('accepts the built argv and serves the base model, the adapter by name, echo completions, and sleep/wake', async () => {
    const port = await freePort();
    const record = join(mkdtempSync(join(tmpdir(), 'fake-vllm-')), 'record.json');
    const argv = vllmServeArgv({
      model: 'Qwen/Qwen2.5-0.5B-Instruct',
      host: '127.0.0.1',
      port,
      gpuMemoryUtilization: 0.3,
      maxModelLen: 2048,
      tensorParallelSize: 1,
      loras: [{ name: 'task-abc', path: '/outputs/task-abc/adapter' }],
    });
    start(argv, { ...vllmServeEnv([0]), FAKE_VLLM_RECORD: record });
    const base = `http://127.0.0.1:${port}`;
    await untilUp(base);
    expect(JSON.parse(readFileSync(record, 'utf8'))).toMatchObject({ argv, env: { VLLM_SERVER_DEV_MODE: '1' } });

    const models = (await (await fetch(`${base}/v1/models`)).json()) as { data: { id: string; parent: string | null }[] };
    expect(models.data.map((m) => [m.id, m.parent])).toEqual([
      ['Qwen/Qwen2.5-0.5B-Instruct', null],
      ['task-abc', 'Qwen/Qwen2.5-0.5B-Instruct'],
    ]);

    const chat = (body: unknown) =>
      fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const answer = (await (await chat({ model: 'task-abc', messages: [{ role: 'user', content: 'hi' }] })).json()) as {
      choices: { message: { content: string } }[];
    };
    expect(answer.choices[0]!.message.content).toBe('echo: hi');
    expect((await chat({ model: 'nope', messages: [] })).status).toBe(404);
    const completion = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'Qwen/Qwen2.5-0.5B-Instruct', prompt: 'abc' }),
    });
    expect(((await completion.json()) as { choices: { text: string }[] }).choices[0]!.text).toBe('echo: abc');

    expect((await fetch(`${base}/sleep?level=1`, { method: 'POST' })).status).toBe(200);
    expect(await (await fetch(`${base}/is_sleeping`)).json()).toEqual({ is_sleeping: true });
    expect((await chat({ model: 'task-abc', messages: [{ role: 'user', content: 'hi' }] })).status).toBe(503);
    expect((await fetch(`${base}/wake_up`, { method: 'POST' })).status).toBe(200);
    expect(await (await fetch(`${base}/is_sleeping`)).json()).toEqual({ is_sleeping: false });
    expect((await chat({ model: 'task-abc', messages: [{ role: 'user', content: 'hi' }] })).status).toBe(200);
  });

  it('without VLLM_SERVER_DEV_MODE the sleep routes do not exist, as in vLLM', async () => {
    const port = await freePort();
    start(['serve', 'm', '--host', '127.0.0.1', '--port', String(port), '--enable-sleep-mode'], {});
    const base = `http://127.0.0.1:${port}`;
    await untilUp(base);
    expect((await fetch(`${base}/sleep?level=1`, { method: 'POST' })).status).toBe(404);
  });

  it('refuses a flag vLLM does not have, and a LoRA module without --enable-lora, with exit 2', async () => {
    const bogus = start(['serve', 'm', '--gpu-memory', '0.5'], {});
    expect(await bogus.exit).toBe(2);
    expect(bogus.stderr()).toMatch(/gpu-memory/);
    const noLora = start(['serve', 'm', '--lora-modules', 'a=/x'], {});
    expect(await noLora.exit).toBe(2);
    expect(noLora.stderr()).toMatch(/--enable-lora/);
  });

  it('dies when told to (a crash a deployment must notice)', async () => {
    const port = await freePort();
    const run = start(['serve', 'm', '--host', '127.0.0.1', '--port', String(port)], { FAKE_VLLM_DIE_MS: '50' });
    expect(await run.exit).toBe(1);
  });
});
