import { describe, expect, it } from 'vitest';
import {
  buildGpuInfo,
  describeFailure,
  externalShare,
  NvidiaSmiParseError,
  parseAppsCsv,
  parseGpuCsv,
  parseNvidiaSmi,
  type GpuDevice,
} from './index';

const AT = '2025-01-01T00:00:00.000Z';

describe('parseGpuCsv', () => {
  it('parses rows with extra whitespace and CRLF line ends', () => {
    const text = '  0 ,  GPU-a ,  NVIDIA GeForce RTX 3060 , 12288 ,1024,  7  \r\n\r\n1, GPU-b, Tesla T4, 15360, 0, 0\r\n';
    expect(parseGpuCsv(text)).toEqual([
      { index: 0, uuid: 'GPU-a', name: 'NVIDIA GeForce RTX 3060', memoryTotalMiB: 12288, memoryUsedMiB: 1024, utilization: 7 },
      { index: 1, uuid: 'GPU-b', name: 'Tesla T4', memoryTotalMiB: 15360, memoryUsedMiB: 0, utilization: 0 },
    ]);
  });

  it('reads [N/A] / [Not Supported] as unavailable (MIG mode)', () => {
    expect(
      parseGpuCsv('0, GPU-h, NVIDIA H100 80GB HBM3, 81559, [N/A], [N/A]\n1, GPU-g, GeForce GT 710, 2048, 300, [Not Supported]'),
    ).toEqual([
      { index: 0, uuid: 'GPU-h', name: 'NVIDIA H100 80GB HBM3', memoryTotalMiB: 81559, memoryUsedMiB: 0, utilization: null },
      { index: 1, uuid: 'GPU-g', name: 'GeForce GT 710', memoryTotalMiB: 2048, memoryUsedMiB: 300, utilization: null },
    ]);
  });

  it('empty output is no GPUs', () => {
    expect(parseGpuCsv('')).toEqual([]);
    expect(parseGpuCsv('\n  \n')).toEqual([]);
  });

  it.each([
    ['random text', 'Segmentation fault (core dumped)'],
    ['too few fields', '0, GPU-a, RTX 3060, 12288, 1024'],
    ['too many fields', '0, GPU-a, RTX 3060, 12288, 1024, 7, 8'],
    ['a header line', 'index, uuid, name, memory.total [MiB], memory.used [MiB], utilization.gpu [%]'],
    ['units left in', '0, GPU-a, RTX 3060, 12288 MiB, 1024 MiB, 7 %'],
    ['one bad line among good ones', '0, GPU-a, RTX 3060, 12288, 1024, 7\nwhat, is, this, even, doing, here'],
  ])('throws on garbage: %s', (_what, text) => {
    expect(() => parseGpuCsv(text)).toThrow(NvidiaSmiParseError);
  });
});

describe('parseAppsCsv', () => {
  it('parses processes, [N/A] memory reads as 0', () => {
    expect(parseAppsCsv('GPU-a, 23817, /usr/bin/python3, 900\nGPU-h, 51202, python3, [N/A]\n')).toEqual([
      { gpuUuid: 'GPU-a', pid: 23817, name: '/usr/bin/python3', usedMemoryMiB: 900 },
      { gpuUuid: 'GPU-h', pid: 51202, name: 'python3', usedMemoryMiB: 0 },
    ]);
  });

  it('keeps commas inside a process name', () => {
    expect(parseAppsCsv('GPU-a, 7, /opt/a,b/python, 10')[0]!.name).toBe('/opt/a, b/python');
  });

  it('empty output and "No running processes found" are no processes', () => {
    expect(parseAppsCsv('')).toEqual([]);
    expect(parseAppsCsv('No running processes found\n')).toEqual([]);
  });

  it('throws on garbage', () => {
    expect(() => parseAppsCsv('lorem ipsum')).toThrow(NvidiaSmiParseError);
    expect(() => parseAppsCsv('GPU-a, not-a-pid, python, 10')).toThrow(NvidiaSmiParseError);
    expect(() => parseAppsCsv('GPU-a, 12, python, lots')).toThrow(NvidiaSmiParseError);
  });
});

describe('buildGpuInfo / parseNvidiaSmi', () => {
  const gpus = '0, GPU-a, NVIDIA GeForce RTX 3060, 12288, 3000, 40\n1, GPU-b, Tesla T4, 15360, 0, [N/A]';
  const apps = 'GPU-a, 100, /srv/trainer/python, 1500\nGPU-a, 200, python3, 900\nGPU-a, 300, Xorg, 60\nGPU-x, 400, orphan, 5';

  it('attaches processes by uuid, flags ours, sums external memory', () => {
    const info = parseNvidiaSmi(gpus, apps, new Set([100]), AT);
    expect(info.available).toBe(true);
    expect(info.count).toBe(2);
    expect(info.error).toBeUndefined();
    expect(info.probedAt).toBe(AT);
    const [a, b] = info.devices as [GpuDevice, GpuDevice];
    expect(a).toEqual({
      id: 0,
      uuid: 'GPU-a',
      name: 'NVIDIA GeForce RTX 3060',
      memoryGb: 12,
      memoryUsedGb: 2.9,
      utilization: 40,
      processes: [
        { pid: 100, name: '/srv/trainer/python', memoryUsedGb: 1.5, ours: true },
        { pid: 200, name: 'python3', memoryUsedGb: 0.9, ours: false },
        { pid: 300, name: 'Xorg', memoryUsedGb: 0.1, ours: false },
      ],
      externalMemoryGb: 0.9, // (900 + 60) MiB, rounded once
    });
    expect(b).toMatchObject({ id: 1, memoryGb: 15, utilization: null, processes: [], externalMemoryGb: 0 });
    expect(info.recommendation).toBe(
      '2 GPUs, 27GB in total; each task uses one GPU: Tesla T4 (15GB): Qwen 2.5 Coder 3B recommended, or 1.5B for faster training',
    );
  });

  it('exactly 12 GB (12288 MiB) gets the 3B tier', () => {
    const info = buildGpuInfo(parseGpuCsv('0, GPU-a, NVIDIA GeForce RTX 3060, 12288, 0, 0'), [], new Set(), AT);
    expect(info.devices[0]!.memoryGb).toBe(12);
    expect(info.recommendation).toBe('NVIDIA GeForce RTX 3060 (12GB): Qwen 2.5 Coder 3B recommended, or 1.5B for faster training');
  });

  it('sorts devices by index', () => {
    const info = buildGpuInfo(parseGpuCsv('1, GPU-b, B, 1024, 0, 0\n0, GPU-a, A, 2048, 0, 0'), [], new Set(), AT);
    expect(info.devices.map((d) => d.id)).toEqual([0, 1]);
  });

  it('no GPUs → unavailable', () => {
    const info = parseNvidiaSmi('', '', new Set(), AT);
    expect(info).toMatchObject({ available: false, count: 0, devices: [], error: 'nvidia-smi reported no GPUs' });
    expect(info.recommendation).toMatch(/^No NVIDIA GPU detected \(nvidia-smi reported no GPUs\)\. GPU trainers cannot run without one/);
  });

  it('garbage GPU output → unavailable, says it could not be parsed', () => {
    const info = parseNvidiaSmi('lorem ipsum\ndolor', '', new Set(), AT);
    expect(info.available).toBe(false);
    expect(info.devices).toEqual([]);
    expect(info.recommendation).toContain('nvidia-smi output could not be parsed');
    expect(info.error).toMatch(/^nvidia-smi output could not be parsed: line 1: expected 6 fields, got 1/);
  });

  it('garbage or missing process list keeps the GPUs, with an error', () => {
    const garbled = parseNvidiaSmi(gpus, 'lorem ipsum', new Set(), AT);
    expect(garbled.available).toBe(true);
    expect(garbled.devices[0]!.processes).toEqual([]);
    expect(garbled.error).toMatch(/^GPU process list unavailable \(output could not be parsed/);
    const missing = parseNvidiaSmi(gpus, null, new Set(), AT, 'nvidia-smi timed out after 5000ms');
    expect(missing.available).toBe(true);
    expect(missing.error).toBe('GPU process list unavailable (nvidia-smi timed out after 5000ms)');
  });

  it('externalShare', () => {
    expect(externalShare({ memoryGb: 12, externalMemoryGb: 3 })).toBe(0.25);
    expect(externalShare({ memoryGb: 12, externalMemoryGb: 0 })).toBe(0);
    expect(externalShare({ memoryGb: 0, externalMemoryGb: 1 })).toBe(0);
  });
});

describe('describeFailure', () => {
  it('says what happened and what to do', () => {
    expect(describeFailure({ kind: 'not-found', command: 'nvidia-smi', onPath: true }).recommendation).toBe(
      'No NVIDIA GPU detected (nvidia-smi not found on PATH). GPU trainers cannot run without one (the simulated trainer can); install the NVIDIA driver or check PATH.',
    );
    expect(describeFailure({ kind: 'not-found', command: '/opt/nv/nvidia-smi', onPath: false }).recommendation).toContain(
      'nvidia-smi not found at /opt/nv/nvidia-smi',
    );
    const exit = describeFailure({ kind: 'exit', code: 9, signal: null, output: '\nNVIDIA-SMI has failed\nsecond line' });
    expect(exit.error).toBe('nvidia-smi exited with code 9: NVIDIA-SMI has failed');
    expect(exit.recommendation).toContain('check that the NVIDIA driver is installed and loaded');
    expect(describeFailure({ kind: 'exit', code: null, signal: 'SIGSEGV', output: '' }).error).toBe('nvidia-smi was killed by SIGSEGV');
    expect(describeFailure({ kind: 'timeout', timeoutMs: 5000 }).recommendation).toContain('did not answer within 5s');
  });
});
