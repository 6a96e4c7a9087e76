// Rough GPU memory estimate for a LoRA fine-tuning run, used only to warn before a likely
// out-of-memory failure. Pure. It is a heuristic tuned to the Qwen 2.5 family, not a guarantee:
// it should rank configurations correctly (monotonic in every knob) and be in the right ballpark.

import { MODEL_SIZES_B, recommendedModels } from './models';

export interface EstimateInput {
  /** Hugging Face id or name containing the size, e.g. "Qwen/Qwen2.5-Coder-1.5B-Instruct". */
  model: string;
  maxLength: number;
  batchSize: number;
  load8bit: boolean;
  load4bit: boolean;
  loraRank: number;
}

export interface MemoryEstimate {
  /** Parameter count in billions, or null when the model name does not say it. */
  paramsB: number | null;
  /** Estimated peak GPU memory in GB (GiB), one decimal; null when paramsB is unknown. */
  estimateGb: number | null;
}

const GIB = 1024 ** 3;
/** CUDA context, cuBLAS workspaces and allocator slack that exist whatever the model. */
const CUDA_CONTEXT_GB = 1;
/** Transformer layers assumed for the activation term (Qwen 2.5 0.5B–7B have 24–36). */
const LAYERS = 28;
/** fp16 activation tensors of width `hidden` kept per layer per token for the backward pass. */
const ACTIVATION_TENSORS_PER_LAYER = 6;
/** LoRA-adapted projections per layer (q, k, v, o, gate, up, down). */
const LORA_TARGETS = 7;
/** Bytes per trainable LoRA parameter: fp32 weight + fp32 gradient + two fp32 Adam moments. */
const LORA_BYTES_PER_PARAM = 16;

/**
 * Parameter count in billions from a model name: "…-1.5B-…" → 1.5, "7b" → 7, "500M" → 0.5.
 * The number must start a word (so "Qwen2.5" is not read as a size) and the unit must end one
 * (so "4bit" is not read as 4B). "8x7B"-style mixture-of-experts names give null.
 */
export function parseParamsB(model: string): number | null {
  const m = /(?:^|[^a-z0-9.])(\d+(?:\.\d+)?)([bm])(?![a-z0-9])/i.exec(model);
  if (!m) return null;
  const n = Number(m[1]);
  if (!Number.isFinite(n) || n <= 0) return null;
  return m[2]!.toLowerCase() === 'm' ? n / 1000 : n;
}

/**
 * estimate = weights + activations + LoRA/optimizer + CUDA context, with P = parameters (billions):
 *
 *   weights     = P·1e9 × bytes/param            (2 fp16, 1 for 8-bit, 0.5 for 4-bit)
 *   hidden      = 1300·√P                        (fits Qwen 2.5: 0.5B→896, 1.5B→1536, 3B→2048, 7B→3584)
 *   activations = batch × maxLength × hidden × 28 layers × 6 tensors × 2 bytes
 *   lora        = 2·rank·hidden × 7 targets × 28 layers × 16 bytes   (A and B matrices + grads + Adam)
 *   context     = 1 GB
 *
 * Every term is non-decreasing in maxLength, batchSize, loraRank and model size, and the weights
 * term shrinks with 8-/4-bit loading (4-bit wins if both are set), so comparisons are meaningful.
 */
export function estimateMemoryGb(input: EstimateInput): MemoryEstimate {
  const paramsB = parseParamsB(input.model);
  if (paramsB === null) return { paramsB: null, estimateGb: null };

  const nonNeg = (x: number) => (Number.isFinite(x) && x > 0 ? x : 0);
  const bytesPerParam = input.load4bit ? 0.5 : input.load8bit ? 1 : 2;
  const hidden = 1300 * Math.sqrt(paramsB);

  const weights = paramsB * 1e9 * bytesPerParam;
  const activations = nonNeg(input.batchSize) * nonNeg(input.maxLength) * hidden * LAYERS * ACTIVATION_TENSORS_PER_LAYER * 2;
  const lora = 2 * nonNeg(input.loraRank) * hidden * LORA_TARGETS * LAYERS * LORA_BYTES_PER_PARAM;

  const estimateGb = (weights + activations + lora) / GIB + CUDA_CONTEXT_GB;
  return { paramsB, estimateGb: Math.round(estimateGb * 10) / 10 };
}

export type OomLevel = 'low' | 'medium' | 'high';

/**
 * Risk of running out of GPU memory: high above 90 % of `deviceMemoryGb`, medium above 70 %.
 * Pass the memory actually free for us (e.g. memoryGb − externalMemoryGb) to account for other
 * programs. With `input`, the advice names concrete changes ("lower max length from 2048 to 1024").
 */
export function oomRisk(estimateGb: number, deviceMemoryGb: number, input?: EstimateInput): { level: OomLevel; message: string } {
  const level: OomLevel = estimateGb > 0.9 * deviceMemoryGb ? 'high' : estimateGb > 0.7 * deviceMemoryGb ? 'medium' : 'low';
  const of = `about ${estimateGb}GB of ${deviceMemoryGb}GB GPU memory`;
  if (level === 'low') return { level, message: `Estimated ${of}; should fit.` };

  const verdict = level === 'high' ? 'training will likely run out of memory' : 'training may run out of memory';
  return { level, message: `Estimated ${of}: ${verdict}. To use less, ${suggestions(deviceMemoryGb, input)}.` };
}

/** "lower max length from 2048 to 1024, batch size to 1, enable 4-bit loading, or pick the 1.5B model" */
function suggestions(deviceMemoryGb: number, input?: EstimateInput): string {
  if (!input) return 'lower max length, lower batch size to 1, enable 4-bit loading, or pick a smaller model';
  const s: string[] = [];
  if (input.maxLength > 256) s.push(`lower max length from ${input.maxLength} to ${Math.floor(input.maxLength / 2)}`);
  if (input.batchSize > 1) s.push('batch size to 1');
  if (!input.load4bit) s.push('enable 4-bit loading');
  const smaller = smallerModel(parseParamsB(input.model), deviceMemoryGb);
  if (smaller !== null) s.push(`pick the ${smaller}B model`);
  if (s.length === 0) return 'free GPU memory used by other programs or use a GPU with more memory';
  return s.length === 1 ? s[0]! : `${s.slice(0, -1).join(', ')}, or ${s[s.length - 1]!}`;
}

/** The model recommended for this GPU if it is smaller than the current one, else the next size down. */
function smallerModel(paramsB: number | null, deviceMemoryGb: number): number | null {
  const recommended = parseParamsB(recommendedModels(deviceMemoryGb)[0] ?? '');
  if (paramsB === null) return recommended;
  if (recommended !== null && recommended < paramsB) return recommended;
  return MODEL_SIZES_B.find((size) => size < paramsB) ?? null;
}

/** What to change so that a run fits a GPU (fittingSettings). */
export interface FittingSettings {
  /** The settings with the change made. */
  input: EstimateInput;
  estimateGb: number;
  /** Each change in words: "batch size 4 → 1", "max length 2048 → 1024", "4-bit loading". */
  changes: string[];
}

/** Shortest max length fittingSettings goes down to. */
const FIT_MIN_LENGTH = 256;

/**
 * The fewest changes after which the estimate is low risk on a GPU with `memoryGb` free (oomRisk's
 * "should fit"), of these three: batch size to 1, max length halved (as few times as it takes, not
 * below 256), 4-bit loading. Among as many changes, in that order of preference. Null when the
 * model's size is unknown, when the settings fit already, or when even all three do not fit (a
 * smaller model or GPU is the answer then: oomRisk says so).
 */
export function fittingSettings(input: EstimateInput, memoryGb: number): FittingSettings | null {
  const fits = (i: EstimateInput) => {
    const e = estimateMemoryGb(i).estimateGb;
    return e !== null && oomRisk(e, memoryGb).level === 'low' ? e : null;
  };
  if (estimateMemoryGb(input).estimateGb === null || fits(input) !== null) return null;
  const batch = (i: EstimateInput) => (i.batchSize > 1 ? [{ ...i, batchSize: 1 }] : []);
  const quant = (i: EstimateInput) => (i.load4bit ? [] : [{ ...i, load4bit: true, load8bit: false }]);
  const lengths = (i: EstimateInput) => {
    const out: EstimateInput[] = [];
    for (let n = Math.floor(i.maxLength / 2); i.maxLength > FIT_MIN_LENGTH; n = Math.floor(n / 2)) {
      out.push({ ...i, maxLength: Math.max(FIT_MIN_LENGTH, n) });
      if (n <= FIT_MIN_LENGTH) break;
    }
    return out;
  };
  type Change = (i: EstimateInput) => EstimateInput[];
  const tiers: Change[][] = [[batch], [lengths], [quant], [batch, lengths], [batch, quant], [quant, lengths], [batch, quant, lengths]];
  for (const tier of tiers) {
    let candidates = [input];
    for (const change of tier) candidates = candidates.flatMap(change);
    for (const c of candidates) {
      const e = fits(c);
      if (e !== null) return { input: c, estimateGb: e, changes: describeChanges(input, c) };
    }
  }
  return null;
}

function describeChanges(from: EstimateInput, to: EstimateInput): string[] {
  const out: string[] = [];
  if (to.batchSize !== from.batchSize) out.push(`batch size ${from.batchSize} → ${to.batchSize}`);
  if (to.maxLength !== from.maxLength) out.push(`max length ${from.maxLength} → ${to.maxLength}`);
  if (to.load4bit && !from.load4bit) out.push('4-bit loading');
  return out;
}
