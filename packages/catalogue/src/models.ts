// The models offered by name, and which of them to recommend for a GPU's memory. Each task
// trains on one GPU, so advice always follows the memory of a single GPU.

const QWEN = (size: string) => `Qwen/Qwen2.5-Coder-${size}-Instruct`;

/** Parameter counts (billions) of the models offered, largest first. */
export const MODEL_SIZES_B = [7, 3, 1.5, 0.5] as const;

/** Hugging Face ids of the models offered (Qwen 2.5 Coder Instruct), largest first. */
export const MODELS: readonly string[] = MODEL_SIZES_B.map((b) => QWEN(`${b}B`));

interface Tier {
  minGb: number;
  advice: string;
  models: string[];
}

/** Largest first; a GPU gets the first tier whose minimum it reaches (>=, so exactly 12.0 GB is the 3B tier). */
const TIERS: readonly Tier[] = [
  { minGb: 24, advice: 'Qwen 2.5 Coder 7B recommended, or 3B for faster training', models: [QWEN('7B'), QWEN('3B')] },
  { minGb: 12, advice: 'Qwen 2.5 Coder 3B recommended, or 1.5B for faster training', models: [QWEN('3B'), QWEN('1.5B')] },
  { minGb: 8, advice: 'Qwen 2.5 Coder 1.5B recommended (best balance) or 0.5B (fastest training)', models: [QWEN('1.5B'), QWEN('0.5B')] },
  { minGb: 0, advice: 'Qwen 2.5 Coder 0.5B recommended', models: [QWEN('0.5B')] },
];

function tierFor(memoryGb: number): Tier {
  return TIERS.find((t) => memoryGb >= t.minGb) ?? TIERS[TIERS.length - 1]!;
}

/** Hugging Face model ids suited to a GPU with this much memory, preferred first. */
export function recommendedModels(memoryGb: number): string[] {
  return [...tierFor(memoryGb).models];
}

/**
 * One sentence for the UI. Each task trains on one GPU, so with several GPUs the advice follows
 * the largest single GPU, not the total. The caller words the no-GPU case (it knows why).
 */
export function recommend(devices: readonly { name: string; memoryGb: number }[]): string {
  if (devices.length === 0) return 'No GPU: no model recommended.';
  const largest = devices.reduce((best, d) => (d.memoryGb > best.memoryGb ? d : best));
  const single = `${largest.name} (${largest.memoryGb}GB): ${tierFor(largest.memoryGb).advice}`;
  if (devices.length === 1) return single;
  const total = Math.round(devices.reduce((s, d) => s + d.memoryGb, 0) * 10) / 10;
  return `${devices.length} GPUs, ${total}GB in total; each task uses one GPU: ${single}`;
}
