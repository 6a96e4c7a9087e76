import { describe, expect, it } from 'vitest';
import {
  buildGpuInfo,
  describeFailure,
  estimateMemoryGb,
  externalShare,
  NvidiaSmiParseError,
  oomRisk,
  parseAppsCsv,
  parseGpuCsv,
  parseNvidiaSmi,
  parseParamsB,
  recommend,
  recommendedModels,
  type EstimateInput,
  type GpuDevice,
} from './index';

const AT = '2025-01-01T00:00:00.000Z';
const dev = (name: string, memoryGb: number) => ({ name, memoryGb });

describe('recommend: tiers by the memory of one GPU', () => {
  it.each([
    [4, 'Qwen 2.5 Coder 0.5B recommended'],
    [7.9, 'Qwen 2.5 Coder 0.5B recommended'],
    [8, 'Qwen 2.5 Coder 1.5B recommended (best balance) or 0.5B (fastest training)'],
    [11.9, 'Qwen 2.5 Coder 1.5B recommended (best balance) or 0.5B (fastest training)'],
    [12, 'Qwen 2.5 Coder 3B recommended, or 1.5B for faster training'],
    [23.9, 'Qwen 2.5 Coder 3B recommended, or 1.5B for faster training'],
    [24, 'Qwen 2.5 Coder 7B recommended, or 3B for faster training'],
    [80, 'Qwen 2.5 Coder 7B recommended, or 3B for faster training'],
  ])('%d GB', (gb, advice) => {
    expect(recommend([dev('GPU X', gb)])).toBe(`GPU X (${gb}GB): ${advice}`);
  });

  it('exactly 12 GB (12288 MiB) is the 3B tier', () => {
    const info = buildGpuInfo(parseGpuCsv('0, GPU-a, NVIDIA GeForce RTX 3060, 12288, 0, 0'), [], new Set(), AT);
    expect(info.devices[0]!.memoryGb).toBe(12);
    expect(info.recommendation).toBe(
      'NVIDIA GeForce RTX 3060 (12GB): Qwen 2.5 Coder 3B recommended, or 1.5B for faster training',
    );
  });

  it('several GPUs: total, and the tier of the largest single GPU', () => {
    expect(recommend([dev('NVIDIA A100-SXM4-80GB', 80), dev('NVIDIA A100-SXM4-80GB', 80)])).toBe(
      '2 GPUs, 160GB in total; each task uses one GPU: NVIDIA A100-SXM4-80GB (80GB): Qwen 2.5 Coder 7B recommended, or 3B for faster training',
    );
    // Two 12 GB cards do not add up to a 24 GB tier.
    expect(recommend([dev('A', 12), dev('B', 8), dev('C', 12)])).toBe(
      '3 GPUs, 32GB in total; each task uses one GPU: A (12GB): Qwen 2.5 Coder 3B recommended, or 1.5B for faster training',
    );
  });

  it('no GPUs', () => {
    expect(recommend([])).toMatch(/^No NVIDIA GPU detected/);
  });

  it('recommendedModels: HF ids in preferred order', () => {
    expect(recommendedModels(24)).toEqual(['Qwen/Qwen2.5-Coder-7B-Instruct', 'Qwen/Qwen2.5-Coder-3B-Instruct']);
    expect(recommendedModels(12)).toEqual(['Qwen/Qwen2.5-Coder-3B-Instruct', 'Qwen/Qwen2.5-Coder-1.5B-Instruct']);
    expect(recommendedModels(8)).toEqual(['Qwen/Qwen2.5-Coder-1.5B-Instruct', 'Qwen/Qwen2.5-Coder-0.5B-Instruct']);
    expect(recommendedModels(7.9)).toEqual(['Qwen/Qwen2.5-Coder-0.5B-Instruct']);
    expect(recommendedModels(0)).toEqual(['Qwen/Qwen2.5-Coder-0.5B-Instruct']);
  });
});

describe('parseGpuCsv', () => {
  it('parses rows with extra whitespace and CRLF line ends', () => {
    const text = '  0 ,  GPU-a ,  NVIDIA GeForce RTX 3060 , 12288 ,1024,  7  \r\n\r\n1, GPU-b, Tesla T4, 15360, 0, 0\r\n';
    expect(parseGpuCsv(text)).toEqual([
      { index: 0, uuid: 'GPU-a', name: 'NVIDIA GeForce RTX 3060', memoryTotalMiB: 12288, memoryUsedMiB: 1024, utilization: 7 },
      { index: 1, uuid: 'GPU-b', name: 'Tesla T4', memoryTotalMiB: 15360, memoryUsedMiB: 0, utilization: 0 },
    ]);
  });

  it('reads [N/A] / [Not Supported] as unavailable (MIG mode)', () => {
    expect(parseGpuCsv('0, GPU-h, NVIDIA H100 80GB HBM3, 81559, [N/A], [N/A]\n1, GPU-g, GeForce GT 710, 2048, 300, [Not Supported]')).toEqual([
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
    expect(describeFailure({ kind: 'exit', code: null, signal: 'SIGSEGV', output: '' }).error).toBe(
      'nvidia-smi was killed by SIGSEGV',
    );
    expect(describeFailure({ kind: 'timeout', timeoutMs: 5000 }).recommendation).toContain('did not answer within 5s');
  });
});

describe('estimateMemoryGb', () => {
  const base: EstimateInput = {
    model: 'Qwen/Qwen2.5-Coder-1.5B-Instruct',
    maxLength: 2048,
    batchSize: 4,
    load8bit: false,
    load4bit: false,
    loraRank: 16,
  };
  const gb = (over: Partial<EstimateInput>) => estimateMemoryGb({ ...base, ...over }).estimateGb!;

  it.each([
    ['Qwen/Qwen2.5-Coder-1.5B-Instruct', 1.5],
    ['Qwen/Qwen2.5-Coder-7B-Instruct', 7],
    ['Qwen/Qwen2.5-Coder-0.5B-Instruct', 0.5],
    ['my-7b', 7],
    ['gpt-500M', 0.5],
    ['TinyLlama/TinyLlama-1.1B-Chat-v1.0', 1.1],
    ['meta-llama/Llama-3.1-8B', 8],
    ['Qwen/Qwen2.5-Coder-7B-Instruct-4bit', 7],
    ['/models/finetuned', null],
    ['mistralai/Mixtral-8x7B-v0.1', null],
  ])('parses parameter count from %s', (name, expected) => {
    expect(parseParamsB(name)).toBe(expected);
  });

  it('unknown size → null estimate', () => {
    expect(estimateMemoryGb({ ...base, model: '/models/finetuned' })).toEqual({ paramsB: null, estimateGb: null });
  });

  it('is in a plausible range', () => {
    const e = estimateMemoryGb(base);
    expect(e.paramsB).toBe(1.5);
    expect(e.estimateGb).toBeGreaterThan(5);
    expect(e.estimateGb).toBeLessThan(15);
    // The 0.5B model at a short length fits easily in 4 GB.
    expect(gb({ model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct', maxLength: 512, batchSize: 1 })).toBeLessThan(4);
  });

  it('is monotonic in maxLength, batch size, LoRA rank and model size', () => {
    const lengths = [128, 512, 1024, 2048, 4096].map((maxLength) => gb({ maxLength }));
    const batches = [1, 2, 4, 8].map((batchSize) => gb({ batchSize }));
    const ranks = [4, 16, 64, 256].map((loraRank) => gb({ loraRank }));
    const sizes = ['0.5B', '1.5B', '3B', '7B'].map((s) => gb({ model: `Qwen/Qwen2.5-Coder-${s}-Instruct` }));
    for (const series of [lengths, batches, ranks, sizes]) {
      for (let i = 1; i < series.length; i++) expect(series[i]!).toBeGreaterThan(series[i - 1]!);
    }
  });

  it('is lower with 8-bit and lower still with 4-bit loading', () => {
    const model = 'Qwen/Qwen2.5-Coder-7B-Instruct';
    const fp16 = gb({ model });
    const int8 = gb({ model, load8bit: true });
    const int4 = gb({ model, load4bit: true });
    expect(int8).toBeLessThan(fp16);
    expect(int4).toBeLessThan(int8);
    expect(gb({ model, load8bit: true, load4bit: true })).toBe(int4);
  });
});

describe('oomRisk', () => {
  it('thresholds: high above 90 %, medium above 70 %', () => {
    expect(oomRisk(9.1, 10).level).toBe('high');
    expect(oomRisk(9, 10).level).toBe('medium');
    expect(oomRisk(7.1, 10).level).toBe('medium');
    expect(oomRisk(7, 10).level).toBe('low');
    expect(oomRisk(1, 10).message).toBe('Estimated about 1GB of 10GB GPU memory; should fit.');
    expect(oomRisk(1, 0).level).toBe('high');
  });

  it('names concrete changes when it knows the configuration', () => {
    const input: EstimateInput = {
      model: 'Qwen/Qwen2.5-Coder-3B-Instruct',
      maxLength: 2048,
      batchSize: 4,
      load8bit: false,
      load4bit: false,
      loraRank: 16,
    };
    const { level, message } = oomRisk(11.5, 12, input);
    expect(level).toBe('high');
    expect(message).toBe(
      'Estimated about 11.5GB of 12GB GPU memory: training will likely run out of memory. To use less, ' +
        'lower max length from 2048 to 1024, batch size to 1, enable 4-bit loading, or pick the 1.5B model.',
    );
    // On a 24 GB GPU running the 7B model, the smaller model to suggest is 3B.
    expect(oomRisk(20, 24, { ...input, model: 'Qwen/Qwen2.5-Coder-7B-Instruct', batchSize: 1, load4bit: true }).message).toBe(
      'Estimated about 20GB of 24GB GPU memory: training may run out of memory. To use less, lower max length from 2048 to 1024, or pick the 3B model.',
    );
  });

  it('generic advice without the configuration', () => {
    expect(oomRisk(11, 12).message).toContain('lower max length, lower batch size to 1, enable 4-bit loading, or pick a smaller model');
  });
});
