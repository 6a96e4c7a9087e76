// GpuProbe against a fake nvidia-smi: a small shell script, put first on PATH, that prints the
// recorded outputs in test/fixtures/nvidia-smi/<scenario>/ and logs each invocation.

import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { APPS_QUERY_ARGS, GPU_QUERY_ARGS, GpuProbe, type GpuInfo } from './index';

const FIXTURES = resolve(dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/nvidia-smi');
const SYSTEM_PATH = '/usr/bin:/bin'; // for the fake's own `cat` and `sleep`
const tmpRoot = mkdtempSync(join(tmpdir(), 'fake-nvidia-smi-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));

interface Fake {
  /** Folder holding the fake `nvidia-smi`. */
  bin: string;
  /** Env whose PATH finds the fake first. */
  env: NodeJS.ProcessEnv;
  /** Argument lines of every invocation so far. */
  calls(): string[];
}

let fakes = 0;
function fakeNvidiaSmi(scenario: string, extraEnv: NodeJS.ProcessEnv = {}): Fake {
  const dir = join(FIXTURES, scenario);
  if (!existsSync(dir)) throw new Error(`no fixture ${dir}`);
  const bin = join(tmpRoot, `bin-${++fakes}`);
  mkdirSync(bin);
  const log = join(bin, 'calls.log');
  // Single-quoted paths: the temp and repo paths contain no single quotes.
  const script = `#!/bin/sh
# Fake nvidia-smi for probe.int.spec.ts (scenario: ${scenario}).
echo "$*" >> '${log}'
if [ -n "$FAKE_NVIDIA_SMI_SLEEP" ]; then exec sleep "$FAKE_NVIDIA_SMI_SLEEP"; fi
dir='${dir}'
[ -f "$dir/stderr.txt" ] && cat "$dir/stderr.txt" >&2
code=0
[ -f "$dir/exit-code" ] && code=$(cat "$dir/exit-code")
case "$*" in
  "${GPU_QUERY_ARGS.join(' ')}") [ -f "$dir/gpus.csv" ] && cat "$dir/gpus.csv" ;;
  "${APPS_QUERY_ARGS.join(' ')}") [ -f "$dir/apps.csv" ] && cat "$dir/apps.csv" ;;
  *) echo "fake nvidia-smi: unexpected arguments: $*" >&2; exit 2 ;;
esac
exit "$code"
`;
  writeFileSync(join(bin, 'nvidia-smi'), script);
  chmodSync(join(bin, 'nvidia-smi'), 0o755);
  return {
    bin,
    env: { ...process.env, ...extraEnv, PATH: `${bin}:${SYSTEM_PATH}` },
    calls: () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : []),
  };
}

function expectIso(info: GpuInfo) {
  expect(new Date(info.probedAt).toISOString()).toBe(info.probedAt);
}

describe('GpuProbe with a fake nvidia-smi', () => {
  it('none: no binary on PATH → unavailable, never throws', async () => {
    const emptyBin = mkdtempSync(join(tmpRoot, 'empty-'));
    const info = await new GpuProbe({ env: { PATH: emptyBin } }).info();
    expect(info).toMatchObject({ available: false, count: 0, devices: [] });
    expect(info.recommendation).toBe(
      'No NVIDIA GPU detected (nvidia-smi not found on PATH). GPU trainers cannot run without one (the simulated trainer can); install the NVIDIA driver or check PATH.',
    );
    expect(info.error).toContain('ENOENT');
    expectIso(info);
  });

  it('none: explicit path that does not exist', async () => {
    const info = await new GpuProbe({ nvidiaSmiPath: join(tmpRoot, 'nope', 'nvidia-smi') }).info();
    expect(info.available).toBe(false);
    expect(info.recommendation).toContain(`nvidia-smi not found at ${join(tmpRoot, 'nope', 'nvidia-smi')}`);
  });

  it('explicit path that is not executable', async () => {
    const file = join(tmpRoot, 'not-executable');
    writeFileSync(file, 'not a program');
    const info = await new GpuProbe({ nvidiaSmiPath: file }).info();
    expect(info.available).toBe(false);
    expect(info.error).toContain('EACCES');
  });

  it('one-gpu: RTX 3060 with an external python process', async () => {
    const fake = fakeNvidiaSmi('one-gpu');
    const info = await new GpuProbe({ env: fake.env }).info();
    expect(info).toMatchObject({
      available: true,
      count: 1,
      recommendation: 'NVIDIA GeForce RTX 3060 (12GB): Qwen 2.5 Coder 3B recommended, or 1.5B for faster training',
      devices: [
        {
          id: 0,
          uuid: 'GPU-4b1c9f3e-7d2a-5e8b-a1c6-93f0d2e4b7a1',
          name: 'NVIDIA GeForce RTX 3060',
          memoryGb: 12,
          memoryUsedGb: 1,
          utilization: 7,
          processes: [{ pid: 23817, name: '/usr/bin/python3', memoryUsedGb: 0.9, ours: false }],
          externalMemoryGb: 0.9,
        },
      ],
    });
    expect(info.error).toBeUndefined();
    expectIso(info);
    // Exactly the two documented queries, GPU list first.
    expect(fake.calls()).toEqual([GPU_QUERY_ARGS.join(' '), APPS_QUERY_ARGS.join(' ')]);
  });

  it('one-gpu: processes whose pid is ours are not external', async () => {
    const fake = fakeNvidiaSmi('one-gpu');
    const info = await new GpuProbe({ env: fake.env, ourPids: () => new Set([23817]) }).info();
    expect(info.devices[0]!.processes).toEqual([{ pid: 23817, name: '/usr/bin/python3', memoryUsedGb: 0.9, ours: true }]);
    expect(info.devices[0]!.externalMemoryGb).toBe(0);
  });

  it('one-gpu: by default nvidia-smi is looked up on process.env.PATH', async () => {
    const fake = fakeNvidiaSmi('one-gpu');
    const saved = process.env.PATH;
    process.env.PATH = `${fake.bin}:${SYSTEM_PATH}`;
    try {
      const info = await new GpuProbe().info();
      expect(info.available).toBe(true);
      expect(info.devices[0]!.name).toBe('NVIDIA GeForce RTX 3060');
    } finally {
      process.env.PATH = saved;
    }
  });

  it('explicit nvidiaSmiPath wins over PATH', async () => {
    const fake = fakeNvidiaSmi('one-gpu');
    const info = await new GpuProbe({ nvidiaSmiPath: join(fake.bin, 'nvidia-smi'), env: { PATH: SYSTEM_PATH } }).info();
    expect(info.available).toBe(true);
  });

  it('several: 2x A100 80GB, our trainer and an external process on GPU 1', async () => {
    const fake = fakeNvidiaSmi('several');
    const info = await new GpuProbe({ env: fake.env, ourPids: () => new Set([31337]) }).info();
    expect(info.available).toBe(true);
    expect(info.count).toBe(2);
    expect(info.recommendation).toBe(
      '2 GPUs, 160GB in total; each task uses one GPU: NVIDIA A100-SXM4-80GB (80GB): Qwen 2.5 Coder 7B recommended, or 3B for faster training',
    );
    const [gpu0, gpu1] = info.devices;
    expect(gpu0).toMatchObject({ id: 0, memoryGb: 80, memoryUsedGb: 0, utilization: 0, processes: [], externalMemoryGb: 0 });
    expect(gpu1).toMatchObject({
      id: 1,
      memoryGb: 80,
      memoryUsedGb: 41.6,
      utilization: 87,
      processes: [
        { pid: 31337, name: '/srv/trainyard/venv/bin/python', memoryUsedGb: 38, ours: true },
        { pid: 4120, name: '/opt/conda/bin/python', memoryUsedGb: 3, ours: false },
      ],
      externalMemoryGb: 3,
    });
  });

  it('mig: H100 in MIG mode, utilization and process memory [N/A]', async () => {
    const fake = fakeNvidiaSmi('mig');
    const info = await new GpuProbe({ env: fake.env }).info();
    expect(info.available).toBe(true);
    expect(info.error).toBeUndefined();
    expect(info.devices).toEqual([
      {
        id: 0,
        uuid: 'GPU-9d3e5a27-61bf-4c08-8e2a-b5f17c0d6e94',
        name: 'NVIDIA H100 80GB HBM3',
        memoryGb: 79.6,
        memoryUsedGb: 12.9,
        utilization: null,
        processes: [
          { pid: 51202, name: 'python3', memoryUsedGb: 0, ours: false },
          { pid: 51388, name: '/usr/local/bin/tritonserver', memoryUsedGb: 0, ours: false },
        ],
        externalMemoryGb: 0,
      },
    ]);
    expect(info.recommendation).toBe('NVIDIA H100 80GB HBM3 (79.6GB): Qwen 2.5 Coder 7B recommended, or 3B for faster training');
  });

  it('empty: nvidia-smi succeeds but lists no GPU → unavailable', async () => {
    const info = await new GpuProbe({ env: fakeNvidiaSmi('empty').env }).info();
    expect(info).toMatchObject({ available: false, count: 0, devices: [] });
    expect(info.recommendation).toContain('nvidia-smi reported no GPUs');
  });

  it('garbage: random text → unavailable, output could not be parsed', async () => {
    const fake = fakeNvidiaSmi('garbage');
    const info = await new GpuProbe({ env: fake.env }).info();
    expect(info).toMatchObject({ available: false, count: 0, devices: [] });
    expect(info.recommendation).toContain('nvidia-smi output could not be parsed');
    expect(info.error).toContain('line 1');
    // The process query is pointless once the GPU list is unusable.
    expect(fake.calls()).toHaveLength(1);
  });

  it('failing: exit code 9 and the driver message on stderr', async () => {
    const info = await new GpuProbe({ env: fakeNvidiaSmi('failing').env }).info();
    expect(info).toMatchObject({ available: false, count: 0, devices: [] });
    expect(info.error).toBe(
      "nvidia-smi exited with code 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.",
    );
    expect(info.recommendation).toMatch(/^NVIDIA GPU not usable: nvidia-smi exited with code 9 \("NVIDIA-SMI has failed because/);
    expect(info.recommendation).toContain('check that the NVIDIA driver is installed and loaded');
  });

  it('hung nvidia-smi: times out quickly instead of waiting', async () => {
    const fake = fakeNvidiaSmi('one-gpu', { FAKE_NVIDIA_SMI_SLEEP: '30' });
    const started = Date.now();
    const info = await new GpuProbe({ env: fake.env, timeoutMs: 300 }).info();
    expect(Date.now() - started).toBeLessThan(5000);
    expect(info.available).toBe(false);
    expect(info.error).toBe('nvidia-smi timed out after 300ms');
    expect(info.recommendation).toContain('did not answer within 0.3s');
  });

  it('never throws, even when ourPids throws', async () => {
    const probe = new GpuProbe({
      env: fakeNvidiaSmi('one-gpu').env,
      ourPids: () => {
        throw new Error('boom');
      },
    });
    const info = await probe.info();
    expect(info.available).toBe(true);
    expect(info.devices[0]!.processes[0]!.ours).toBe(false);
  });
});

describe('GpuProbe caching', () => {
  it('concurrent callers share one probe; results are reused for cacheMs', async () => {
    const fake = fakeNvidiaSmi('one-gpu');
    let now = 1_000_000;
    const probe = new GpuProbe({ env: fake.env, cacheMs: 2000, now: () => now });

    const [a, b, c] = await Promise.all([probe.info(), probe.info(), probe.info()]);
    expect(fake.calls()).toHaveLength(2); // one probe = two nvidia-smi invocations
    expect(b).toEqual(a);
    expect(c).toEqual(a);

    now += 1999;
    await probe.info();
    expect(fake.calls()).toHaveLength(2);

    now += 1;
    await probe.info();
    expect(fake.calls()).toHaveLength(4);
  });

  it('invalidate() forces a fresh probe', async () => {
    const fake = fakeNvidiaSmi('one-gpu');
    const probe = new GpuProbe({ env: fake.env });
    await probe.info();
    await probe.info();
    expect(fake.calls()).toHaveLength(2);
    probe.invalidate();
    await probe.info();
    expect(fake.calls()).toHaveLength(4);
  });

  it('a probe in flight during invalidate() does not refill the cache', async () => {
    const fake = fakeNvidiaSmi('one-gpu');
    const probe = new GpuProbe({ env: fake.env });
    const first = probe.info();
    probe.invalidate();
    const second = probe.info(); // starts its own probe
    await Promise.all([first, second]);
    expect(fake.calls()).toHaveLength(4);
    await probe.info(); // cached from the second probe
    expect(fake.calls()).toHaveLength(4);
  });

  it('cacheMs 0 probes on every call', async () => {
    const fake = fakeNvidiaSmi('one-gpu');
    const probe = new GpuProbe({ env: fake.env, cacheMs: 0 });
    await probe.info();
    await probe.info();
    expect(fake.calls()).toHaveLength(4);
  });

  it('callers get copies: mutating one result does not change the cache', async () => {
    const probe = new GpuProbe({ env: fakeNvidiaSmi('one-gpu').env });
    const first = await probe.info();
    first.devices[0]!.name = 'mutated';
    expect((await probe.info()).devices[0]!.name).toBe('NVIDIA GeForce RTX 3060');
  });

  it('failures are cached too (a missing driver is not re-probed on every request)', async () => {
    const fake = fakeNvidiaSmi('failing');
    const probe = new GpuProbe({ env: fake.env });
    await probe.info();
    await probe.info();
    expect(fake.calls()).toHaveLength(1);
  });
});
