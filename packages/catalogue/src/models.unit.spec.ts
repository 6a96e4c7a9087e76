import { describe, expect, it } from 'vitest';
import { MODELS, recommend, recommendedModels } from './index';

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
    expect(recommend([])).toBe('No GPU: no model recommended.');
  });

  it('recommendedModels: HF ids in preferred order', () => {
    expect(recommendedModels(24)).toEqual(['Qwen/Qwen2.5-Coder-7B-Instruct', 'Qwen/Qwen2.5-Coder-3B-Instruct']);
    expect(recommendedModels(12)).toEqual(['Qwen/Qwen2.5-Coder-3B-Instruct', 'Qwen/Qwen2.5-Coder-1.5B-Instruct']);
    expect(recommendedModels(8)).toEqual(['Qwen/Qwen2.5-Coder-1.5B-Instruct', 'Qwen/Qwen2.5-Coder-0.5B-Instruct']);
    expect(recommendedModels(7.9)).toEqual(['Qwen/Qwen2.5-Coder-0.5B-Instruct']);
    expect(recommendedModels(0)).toEqual(['Qwen/Qwen2.5-Coder-0.5B-Instruct']);
  });
});

describe('MODELS', () => {
  it('offers every recommended model, largest first', () => {
    expect(MODELS).toEqual([
      'Qwen/Qwen2.5-Coder-7B-Instruct',
      'Qwen/Qwen2.5-Coder-3B-Instruct',
      'Qwen/Qwen2.5-Coder-1.5B-Instruct',
      'Qwen/Qwen2.5-Coder-0.5B-Instruct',
    ]);
    for (const gb of [0, 8, 12, 24, 80]) for (const m of recommendedModels(gb)) expect(MODELS).toContain(m);
  });
});
