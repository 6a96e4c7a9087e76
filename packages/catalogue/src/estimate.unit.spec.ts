import { describe, expect, it } from 'vitest';
import { estimateMemoryGb, fittingSettings, oomRisk, parseParamsB, type EstimateInput } from './index';

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

describe('fittingSettings', () => {
  const seven = { model: 'Qwen/Qwen2.5-Coder-7B-Instruct', maxLength: 2048, batchSize: 4, load8bit: false, load4bit: false, loraRank: 8 };

  it('finds the fewest changes that make the estimate low risk, preferring batch size, then max length, then 4-bit', () => {
    const one = fittingSettings(seven, 24)!;
    expect(one.changes).toEqual(['batch size 4 → 1']);
    expect(one.input).toEqual({ ...seven, batchSize: 1 });
    expect(oomRisk(one.estimateGb, 24).level).toBe('low');
    const two = fittingSettings(seven, 12)!;
    expect(two.changes).toEqual(['batch size 4 → 1', '4-bit loading']);
    expect(oomRisk(estimateMemoryGb(two.input).estimateGb!, 12).level).toBe('low');
    // Max length is halved no more than it takes.
    const shorter = fittingSettings({ ...seven, model: 'Qwen/Qwen2.5-Coder-1.5B', batchSize: 1, maxLength: 16384 }, 12)!;
    expect(shorter.changes).toHaveLength(1);
    expect(shorter.changes[0]).toMatch(/^max length 16384 → (8192|4096|2048|1024|512|256)$/);
    const halved = shorter.input.maxLength;
    expect(oomRisk(estimateMemoryGb({ ...shorter.input, maxLength: halved * 2 }).estimateGb!, 12).level).not.toBe('low');
  });

  it('says nothing when the settings fit already, the size is unknown, or nothing fits', () => {
    expect(fittingSettings(seven, 80)).toBeNull();
    expect(fittingSettings({ ...seven, model: 'my-org/coder' }, 12)).toBeNull();
    expect(fittingSettings(seven, 3)).toBeNull();
  });
});
