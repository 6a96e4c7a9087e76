// GpuProbe against a fake nvidia-smi (the test kit's installFakeNvidiaSmi, put first on PATH) that
// prints the recorded outputs in test/fixtures/nvidia-smi/<scenario>/ and logs each invocation.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { installFakeNvidiaSmi, type FakeNvidiaSmiFiles } from '../../test/fake-nvidia-smi';
import { APPS_QUERY_ARGS, GPU_QUERY_ARGS, GpuProbe, inventoryFromGpuInfo, MIG_LIST_ARGS, MIG_QUERY_ARGS, type GpuInfo } from './index';

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
  set(files: FakeNvidiaSmiFiles): void;
}

let fakes = 0;
function fakeNvidiaSmi(scenario: string, extraEnv: NodeJS.ProcessEnv = {}): Fake {
  const fake = installFakeNvidiaSmi(join(tmpRoot, `bin-${++fakes}`), scenario);
  return {
    bin: fake.binDir,
    env: { ...process.env, ...extraEnv, PATH: `${fake.binDir}:${SYSTEM_PATH}` },
    calls: fake.calls,
    set: fake.set,
  };
}

const BASIC_CALLS = [GPU_QUERY_ARGS.join(' '), APPS_QUERY_ARGS.join(' ')];
const MIG_CALLS = [...BASIC_CALLS, MIG_LIST_ARGS.join(' '), MIG_QUERY_ARGS.join(' ')];

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
          // Used memory minus ours: the python process and what nvidia-smi does not list.
          externalMemoryGb: 1,
          memoryMb: 12288,
          externalMemoryMb: 1024,
          migMode: false,
          instances: [],
        },
      ],
    });
    expect(info.error).toBeUndefined();
    expectIso(info);
    // Exactly the two documented queries, GPU list first: no MIG queries without a GPU in MIG mode.
    expect(fake.calls()).toEqual(BASIC_CALLS);
  });

  it('one-gpu: processes whose pid is ours are not external', async () => {
    const fake = fakeNvidiaSmi('one-gpu');
    const info = await new GpuProbe({ env: fake.env, ourPids: () => new Set([23817]) }).info();
    expect(info.devices[0]!.processes).toEqual([{ pid: 23817, name: '/usr/bin/python3', memoryUsedGb: 0.9, ours: true }]);
    expect(info.devices[0]!.externalMemoryMb).toBe(1024 - 900);
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
    expect(gpu0).toMatchObject({
      id: 0,
      memoryGb: 80,
      memoryUsedGb: 0,
      utilization: 0,
      processes: [],
      externalMemoryGb: 0,
      externalMemoryMb: 3,
    });
    expect(gpu1).toMatchObject({
      id: 1,
      memoryGb: 80,
      memoryUsedGb: 41.6,
      utilization: 87,
      processes: [
        { pid: 31337, name: '/srv/trainyard/venv/bin/python', memoryUsedGb: 38, ours: true },
        { pid: 4120, name: '/opt/conda/bin/python', memoryUsedGb: 3, ours: false },
      ],
      externalMemoryGb: 3.6, // 42613 MiB used − 38912 ours
      externalMemoryMb: 3701,
      migMode: false,
      instances: [],
    });
    expect(fake.calls()).toEqual(BASIC_CALLS);
  });

  it('mig: H100 in MIG mode (2x 3g.40gb), utilization and process memory [N/A]', async () => {
    const fake = fakeNvidiaSmi('mig');
    const info = await new GpuProbe({ env: fake.env, ourPids: () => new Set([51202]) }).info();
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
          { pid: 51202, name: 'python3', memoryUsedGb: 0, ours: true },
          { pid: 51388, name: '/usr/local/bin/tritonserver', memoryUsedGb: 0, ours: false },
        ],
        // The instances' sum: our process's memory is unknown, so all used memory counts.
        externalMemoryGb: 12.9,
        memoryMb: 81559,
        externalMemoryMb: 4117 + 9071,
        migMode: true,
        instances: [
          {
            id: 0,
            uuid: 'MIG-4e8a1c90-7b2d-5f63-9a0e-c3d5f7182b4e',
            profile: '3g.40gb',
            memoryGb: 39.4,
            memoryUsedGb: 4,
            externalMemoryGb: 4,
            memoryMb: 40320,
            externalMemoryMb: 4117,
            processes: [{ pid: 51202, name: 'python3', memoryUsedGb: 0, ours: true }],
          },
          {
            id: 1,
            uuid: 'MIG-b05d93f6-2e41-5a8c-8d7f-61e0a4c9b3d2',
            profile: '3g.40gb',
            memoryGb: 39.4,
            memoryUsedGb: 8.9,
            externalMemoryGb: 8.9,
            memoryMb: 40320,
            externalMemoryMb: 9071,
            processes: [{ pid: 51388, name: '/usr/local/bin/tritonserver', memoryUsedGb: 0, ours: false }],
          },
        ],
      },
    ]);
    expect(info.recommendation).toBe('NVIDIA H100 80GB HBM3 (79.6GB): Qwen 2.5 Coder 7B recommended, or 3B for faster training');
    expect(fake.calls()).toEqual(MIG_CALLS);
  });

  it('four-gpus-mig: three whole A100s and one in MIG mode with 3g.40gb + 2x 1g.10gb', async () => {
    const fake = fakeNvidiaSmi('four-gpus-mig');
    const info = await new GpuProbe({ env: fake.env }).info();
    expect(info.error).toBeUndefined();
    expect(info.count).toBe(4);
    expect(info.devices.map((d) => [d.id, d.name, d.memoryMb, d.migMode, d.externalMemoryMb])).toEqual([
      [0, 'NVIDIA A100 80GB PCIe', 81920, false, 4],
      [1, 'NVIDIA A100 80GB PCIe', 81920, false, 4],
      [2, 'NVIDIA A100-PCIE-40GB', 40960, false, 1543],
      [3, 'NVIDIA A100 80GB PCIe', 81920, true, 12213 + 13 + 13],
    ]);
    expect(info.devices[2]!.processes).toEqual([{ pid: 23817, name: '/usr/bin/python3', memoryUsedGb: 1.5, ours: false }]);
    expect(info.devices.slice(0, 3).every((d) => d.instances.length === 0)).toBe(true);
    expect(info.devices[3]!.instances).toEqual([
      {
        id: 0,
        uuid: 'MIG-7d0c4e9a-2b61-5f38-a4d7-1e9b03c6f852',
        profile: '3g.40gb',
        memoryGb: 39.3,
        memoryUsedGb: 11.9,
        externalMemoryGb: 11.9,
        memoryMb: 40192,
        externalMemoryMb: 12213,
        processes: [{ pid: 48213, name: '/opt/venvs/vllm/bin/python3', memoryUsedGb: 0, ours: false }],
      },
      {
        id: 1,
        uuid: 'MIG-a3e85f12-9c07-5b4d-8e26-f01d7b9c43a6',
        profile: '1g.10gb',
        memoryGb: 9.5,
        memoryUsedGb: 0,
        externalMemoryGb: 0,
        memoryMb: 9728,
        externalMemoryMb: 13,
        processes: [],
      },
      {
        id: 2,
        uuid: 'MIG-1b6f0d83-e4a2-5c97-b358-6d2e9f0a7c14',
        profile: '1g.10gb',
        memoryGb: 9.5,
        memoryUsedGb: 0,
        externalMemoryGb: 0,
        memoryMb: 9728,
        externalMemoryMb: 13,
        processes: [],
      },
    ]);
    expect(fake.calls()).toEqual(MIG_CALLS);
  });

  it('four-gpus-mig through the inventory: whole GPUs, and the MIG GPU as its instances', async () => {
    const info = await new GpuProbe({ env: fakeNvidiaSmi('four-gpus-mig').env }).info();
    const { devices, externalMemoryMb } = inventoryFromGpuInfo(info, null);
    expect(devices.map((d) => [d.id, d.uuid, d.memoryMb, d.migProfile])).toEqual([
      ['gpu0', 'GPU-2f6c0a8e-91d4-7b35-c0e2-58a1f4d93b17', 81920, null],
      ['gpu1', 'GPU-8b3d7e42-0c5a-4f19-a6e8-d27c90b1e5f3', 81920, null],
      ['gpu2', 'GPU-c47e19a3-5d20-8e6b-3f91-0ab2d6c8e754', 40960, null],
      ['gpu3/mig0', 'MIG-7d0c4e9a-2b61-5f38-a4d7-1e9b03c6f852', 40192, '3g.40gb'],
      ['gpu3/mig1', 'MIG-a3e85f12-9c07-5b4d-8e26-f01d7b9c43a6', 9728, '1g.10gb'],
      ['gpu3/mig2', 'MIG-1b6f0d83-e4a2-5c97-b358-6d2e9f0a7c14', 9728, '1g.10gb'],
    ]);
    expect(devices[3]!.name).toBe('NVIDIA A100 80GB PCIe MIG 3g.40gb');
    expect(Object.fromEntries(externalMemoryMb)).toEqual({
      gpu0: 4,
      gpu1: 4,
      gpu2: 1543,
      'gpu3/mig0': 12213,
      'gpu3/mig1': 13,
      'gpu3/mig2': 13,
    });
    expect(inventoryFromGpuInfo(info, [1, 3]).devices.map((d) => d.id)).toEqual(['gpu1', 'gpu3/mig0', 'gpu3/mig1', 'gpu3/mig2']);
  });

  it('a broken MIG answer keeps every GPU, the MIG GPU without instances, and says why', async () => {
    const fake = fakeNvidiaSmi('four-gpus-mig');
    fake.set({ 'query.xml': '<nvidia_smi_log><gpu><uuid>GPU-5e91b2d7' });
    const info = await new GpuProbe({ env: fake.env }).info();
    expect(info.available).toBe(true);
    expect(info.count).toBe(4);
    expect(info.devices[3]).toMatchObject({ migMode: true, instances: [], externalMemoryMb: 12241 });
    expect(info.error).toMatch(/^MIG instances unavailable \(output could not be parsed: nvidia-smi -q -x: not XML/);
    expect(inventoryFromGpuInfo(info, null).devices.map((d) => d.id)).toEqual(['gpu0', 'gpu1', 'gpu2']);
  });

  it('a MIG GPU missing from nvidia-smi -L keeps the GPUs too, and says so', async () => {
    const fake = fakeNvidiaSmi('four-gpus-mig');
    // No answer for -L: the fake prints nothing and exits 0.
    fake.set({ 'list.txt': undefined });
    const info = await new GpuProbe({ env: fake.env }).info();
    expect(info.count).toBe(4);
    expect(info.devices[3]!.instances).toEqual([]);
    expect(info.error).toBe('MIG instances incomplete: GPU 3 is in MIG mode but nvidia-smi -L does not list it');
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
