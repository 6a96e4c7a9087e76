// The training settings' limits, with the labels people read: the server's input schema takes its
// bounds from here, and the panel checks a value against the same bounds (and only then estimates
// memory with it) before anything is sent.

export interface Limit {
  /** The field's name in forms and messages. */
  label: string;
  min: number;
  max: number;
  /** Whole numbers only. */
  integer: boolean;
}

export const TRAINING_LIMITS = {
  epochs: { label: 'Epochs', min: 1, max: 100, integer: true },
  batchSize: { label: 'Batch size', min: 1, max: 256, integer: true },
  gradientAccumulation: { label: 'Gradient accumulation', min: 1, max: 1024, integer: true },
  maxLength: { label: 'Max length', min: 16, max: 32_768, integer: true },
  loraRank: { label: 'LoRA rank', min: 1, max: 1024, integer: true },
  loraAlpha: { label: 'LoRA alpha', min: 1, max: 4096, integer: true },
} as const satisfies Record<string, Limit>;

export type LimitedField = keyof typeof TRAINING_LIMITS;

/** What is wrong with `value` for `field`, in words with its label; null when it is within the limits. */
export function limitProblem(field: LimitedField, value: number | null): string | null {
  const l: Limit = TRAINING_LIMITS[field];
  const range = `${l.integer ? 'a whole number ' : ''}from ${l.min} to ${l.max}`;
  if (value === null || !Number.isFinite(value)) return `${l.label} must be ${range}`;
  if ((l.integer && !Number.isInteger(value)) || value < l.min || value > l.max) return `${l.label} must be ${range}`;
  return null;
}
