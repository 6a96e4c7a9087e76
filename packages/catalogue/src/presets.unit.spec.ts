import { describe, expect, it } from 'vitest';
import { DEFAULT_PRESET, describePresets, estimateMemoryGb, isPresetName, PRESET_NAMES, presetHint, PRESETS } from './index';

describe('PRESETS', () => {
  it('offers safe, balanced and performance, least memory first', () => {
    expect(PRESET_NAMES).toEqual(['safe', 'balanced', 'performance']);
    expect(isPresetName('balanced')).toBe(true);
    expect(isPresetName('turbo')).toBe(false);
    expect(isPresetName('toString')).toBe(false);
  });

  it('each needs more memory than the one before, for every model offered', () => {
    for (const size of ['0.5B', '1.5B', '3B', '7B']) {
      const gb = PRESET_NAMES.map(
        (n) =>
          estimateMemoryGb({ model: `Qwen/Qwen2.5-Coder-${size}-Instruct`, ...PRESETS[n].config, load4bit: false, loraRank: 8 })
            .estimateGb!,
      );
      for (let i = 1; i < gb.length; i++) expect(gb[i]!).toBeGreaterThan(gb[i - 1]!);
    }
  });

  it('keeps the effective batch (batch size × accumulation) the same', () => {
    for (const n of PRESET_NAMES) expect(PRESETS[n].config.batchSize * PRESETS[n].config.gradientAccumulation).toBe(16);
  });

  it('describes itself for help texts', () => {
    expect(describePresets()).toBe('safe = 1/16/512 8-bit (default), balanced = 2/8/1024 8-bit, performance = 4/4/2048 not quantized');
  });

  it('given the default preset, when the presets are labelled, then it alone is called default', () => {
    expect(DEFAULT_PRESET).toBe('safe');
    const marked = PRESET_NAMES.filter((n) => /default/.test(presetHint(n)) || /default/.test(PRESETS[n].blurb));
    expect(marked).toEqual([DEFAULT_PRESET]);
    expect(presetHint('safe')).toBe('least memory · default');
    expect(presetHint('balanced')).toBe('more speed');
  });
});
