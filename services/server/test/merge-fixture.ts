// A tiny base model (two safetensors shards, a config and a tokenizer file) and a PEFT LoRA
// adapter for it (a Linear layer, a bfloat16 layer with its own alpha, an embedding, a module
// trained in full), as PEFT saves them, with the weights the merge must give: PEFT's arithmetic
// (W + alpha/r · B·A), computed here independently of trainers/merge_adapter.py.
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { matmul, transpose, writeSafetensors, type Tensor } from './safetensors';

const seq = (n: number, f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i));
const add = (a: number[], b: number[], scale: number) => a.map((x, i) => x + scale * b[i]!);

export interface MergeFixture {
  base: string;
  adapter: string;
  /** Every tensor of the merged model, by name. */
  expected: Record<string, Tensor>;
}

export function writeMergeFixture(root: string): MergeFixture {
  const base = join(root, 'tiny-base');
  const adapter = join(root, 'tiny-adapter');
  mkdirSync(base, { recursive: true });
  mkdirSync(adapter, { recursive: true });
  const q: Tensor = { dtype: 'F32', shape: [4, 3], data: seq(12, (i) => i - 5) };
  const up: Tensor = { dtype: 'BF16', shape: [6, 4], data: seq(24, (i) => (i % 7) - 3) };
  const embed: Tensor = { dtype: 'F32', shape: [5, 4], data: seq(20, (i) => i * 0.5) };
  const norm: Tensor = { dtype: 'F32', shape: [4], data: [1, 1, 1, 1] };
  const head: Tensor = { dtype: 'F32', shape: [5, 4], data: seq(20, () => 0) };
  writeSafetensors(join(base, 'model-00001-of-00002.safetensors'), {
    'model.layers.0.self_attn.q_proj.weight': q,
    'model.embed_tokens.weight': embed,
  });
  writeSafetensors(join(base, 'model-00002-of-00002.safetensors'), {
    'model.layers.0.mlp.up_proj.weight': up,
    'model.norm.weight': norm,
    'lm_head.weight': head,
  });
  writeFileSync(
    join(base, 'model.safetensors.index.json'),
    JSON.stringify({
      metadata: {},
      weight_map: {
        'model.layers.0.self_attn.q_proj.weight': 'model-00001-of-00002.safetensors',
        'model.embed_tokens.weight': 'model-00001-of-00002.safetensors',
        'model.layers.0.mlp.up_proj.weight': 'model-00002-of-00002.safetensors',
        'model.norm.weight': 'model-00002-of-00002.safetensors',
        'lm_head.weight': 'model-00002-of-00002.safetensors',
      },
    }),
  );
  writeFileSync(join(base, 'config.json'), JSON.stringify({ model_type: 'tiny', hidden_size: 4 }));
  writeFileSync(join(base, 'tokenizer.json'), JSON.stringify({ tiny: true }));

  // r = 2, lora_alpha = 4 (scale 2); up_proj's alpha 8 (scale 4).
  const qA = [1, 0, -1, 0, 1, 1];
  const qB = [1, 0, 0, 1, 1, -1, 0, 1];
  const upA = [1, -1, 0, 1, 0, 1, 1, 0];
  const upB = [1, 0, 0, 1, -1, 1, 1, 1, 0, -1, 1, 0];
  const eA = [1, 0, 1, 0, -1, 0, 1, 1, 0, 1];
  const eB = [0.5, 0, 0, 0.5, 1, 1, -1, 0];
  const newHead = seq(20, () => 7);
  writeSafetensors(join(adapter, 'adapter_model.safetensors'), {
    'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': { dtype: 'F32', shape: [2, 3], data: qA },
    'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight': { dtype: 'F32', shape: [4, 2], data: qB },
    'base_model.model.model.layers.0.mlp.up_proj.lora_A.weight': { dtype: 'F32', shape: [2, 4], data: upA },
    'base_model.model.model.layers.0.mlp.up_proj.lora_B.weight': { dtype: 'F32', shape: [6, 2], data: upB },
    'base_model.model.model.embed_tokens.lora_embedding_A': { dtype: 'F32', shape: [2, 5], data: eA },
    'base_model.model.model.embed_tokens.lora_embedding_B': { dtype: 'F32', shape: [4, 2], data: eB },
    'base_model.model.lm_head.modules_to_save.weight': { dtype: 'F32', shape: [5, 4], data: newHead },
  });
  writeFileSync(
    join(adapter, 'adapter_config.json'),
    JSON.stringify({
      peft_type: 'LORA',
      base_model_name_or_path: base,
      r: 2,
      lora_alpha: 4,
      alpha_pattern: { up_proj: 8 },
      rank_pattern: {},
      target_modules: ['q_proj', 'up_proj', 'embed_tokens'],
      modules_to_save: ['lm_head'],
      fan_in_fan_out: false,
    }),
  );
  return {
    base,
    adapter,
    expected: {
      'model.layers.0.self_attn.q_proj.weight': { ...q, data: add(q.data, matmul(qB, qA, 4, 2, 3), 2) },
      'model.embed_tokens.weight': { ...embed, data: add(embed.data, transpose(matmul(eB, eA, 4, 2, 5), 4, 5), 2) },
      'model.layers.0.mlp.up_proj.weight': { ...up, data: add(up.data, matmul(upB, upA, 6, 2, 4), 4) },
      'model.norm.weight': norm,
      'lm_head.weight': { ...head, data: newHead },
    },
  };
}

/**
 * Puts a model folder into a Hugging Face cache (`$HF_HOME/hub/models--org--name`, its snapshot
 * for refs/main) as a download would, so it is found by its id.
 */
export function cacheAsHubModel(folder: string, hfHome: string, id: string): void {
  const repo = join(hfHome, 'hub', `models--${id.replace('/', '--')}`);
  cpSync(folder, join(repo, 'snapshots', '0123abcd'), { recursive: true });
  mkdirSync(join(repo, 'refs'), { recursive: true });
  writeFileSync(join(repo, 'refs', 'main'), '0123abcd');
}
