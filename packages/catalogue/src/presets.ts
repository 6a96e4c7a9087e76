// The training presets offered by the CLI (--preset) and the Studio panel (the preset buttons).
// A preset sets only these fields; everything else keeps its own default.
//
// Safe and balanced load the model in 8-bit: it halves the weights' memory, and staying inside
// the GPU matters more there than speed. Performance loads it unquantized (fp16), which trains
// faster and spends the memory on longer sequences and bigger batches instead.

export interface PresetConfig {
  batchSize: number;
  gradientAccumulation: number;
  /** Max sequence length in tokens. */
  maxLength: number;
  load8bit: boolean;
}

export interface Preset {
  /** Its name as a person reads it ("Balanced"). */
  label: string;
  /** What it is for, in a word or two. */
  blurb: string;
  config: PresetConfig;
}

export type PresetName = 'safe' | 'balanced' | 'performance';

/**
 * The preset a new task gets when none is chosen: the panel's form selects it and marks it
 * "default", and `trainyard submit` without --preset sends its settings. Least memory first, so a
 * first task fits the most GPUs.
 */
export const DEFAULT_PRESET: PresetName = 'safe';

/** Batch size × gradient accumulation is 16 in each, so they differ in memory and speed, not in the effective batch. */
export const PRESETS: Readonly<Record<PresetName, Preset>> = {
  safe: { label: 'Safe', blurb: 'least memory', config: { batchSize: 1, gradientAccumulation: 16, maxLength: 512, load8bit: true } },
  balanced: { label: 'Balanced', blurb: 'more speed', config: { batchSize: 2, gradientAccumulation: 8, maxLength: 1024, load8bit: true } },
  performance: {
    label: 'Performance',
    blurb: 'fastest',
    config: { batchSize: 4, gradientAccumulation: 4, maxLength: 2048, load8bit: false },
  },
};

/** Preset names in the order they are offered (least memory first). */
export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];

/** What the panel writes under a preset's name: its blurb, and "default" for the default one. */
export function presetHint(name: PresetName): string {
  return name === DEFAULT_PRESET ? `${PRESETS[name].blurb} · default` : PRESETS[name].blurb;
}

export function isPresetName(name: string): name is PresetName {
  return Object.hasOwn(PRESETS, name);
}

/**
 * "safe = 1/16/512 8-bit (default), balanced = 2/8/1024 8-bit, performance = 4/4/2048 not quantized"
 * (batch / accumulation / max length).
 */
export function describePresets(): string {
  return PRESET_NAMES.map((n) => {
    const c = PRESETS[n].config;
    return `${n} = ${c.batchSize}/${c.gradientAccumulation}/${c.maxLength} ${c.load8bit ? '8-bit' : 'not quantized'}${n === DEFAULT_PRESET ? ' (default)' : ''}`;
  }).join(', ');
}
