// trainers/merge_adapter.py for real (Debian's python3-torch): a PEFT LoRA adapter merged into a
// sharded base model gives PEFT's weights, tensor by tensor, in the base's dtypes, with the base's
// other files; an adapter the merge cannot honour is refused naming why, and nothing is left.
// In CI a missing /usr/bin/python3 or torch is a failure, not a skip.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './harness';
import { writeMergeFixture, type MergeFixture } from './merge-fixture';
import { PYTHON, torchAvailable } from './python-torch';
import { readSafetensors } from './safetensors';

const MERGE = join(REPO_ROOT, 'trainers/merge_adapter.py');

const merge = (base: string, adapter: string, out: string) =>
  spawnSync(PYTHON, [MERGE, '--base', base, '--adapter', adapter, '--out', out], { encoding: 'utf8', timeout: 120_000 });

describe.skipIf(!torchAvailable("the adapter merge's specs"))('merge_adapter.py', () => {
  let root: string;
  let fx: MergeFixture;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'trainyard-merge-'));
    fx = writeMergeFixture(root);
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('merges each adapted layer as PEFT does, keeps the rest, and copies the base’s other files', () => {
    const out = join(root, 'merged');
    const r = merge(fx.base, fx.adapter, out);
    expect(r.stderr).toContain('merged into');
    expect(r.status).toBe(0);
    expect(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as unknown),
    ).toEqual([
      { type: 'progress', step: 1, totalSteps: 2 },
      { type: 'progress', step: 2, totalSteps: 2 },
    ]);
    expect(readdirSync(out).sort()).toEqual([
      'config.json',
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
      'model.safetensors.index.json',
      'tokenizer.json',
    ]);
    const merged = {
      ...readSafetensors(join(out, 'model-00001-of-00002.safetensors')),
      ...readSafetensors(join(out, 'model-00002-of-00002.safetensors')),
    };
    expect(merged).toEqual(fx.expected);
    expect(readFileSync(join(out, 'config.json'), 'utf8')).toBe(readFileSync(join(fx.base, 'config.json'), 'utf8'));
  });

  it('refuses an adapter trained on another base, a DoRA adapter, a folder that is no adapter and a base it cannot find, leaving no output', () => {
    // A second base without q_proj: the adapter changes a layer it lacks.
    const other = writeMergeFixture(join(root, 'other'));
    writeFileSync(
      join(other.base, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { 'model.layers.0.mlp.up_proj.weight': 'model-00002-of-00002.safetensors' } }),
    );
    // The same adapter, as DoRA.
    const dora = writeMergeFixture(join(root, 'dora'));
    const config = JSON.parse(readFileSync(join(dora.adapter, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dora.adapter, 'adapter_config.json'), JSON.stringify({ ...config, use_dora: true }));
    const cases: [base: string, adapter: string, why: RegExp][] = [
      [
        other.base,
        fx.adapter,
        /changes model\.embed_tokens\.weight, model\.layers\.0\.self_attn\.q_proj\.weight, which the base model .* does not have: was it trained on another base\?/,
      ],
      [fx.base, dora.adapter, /DoRA adapter \(use_dora\).*merge off/],
      [fx.base, join(root, 'nowhere'), /is not a PEFT adapter folder \(adapter_config\.json/],
      [join(root, 'no-such-base'), fx.adapter, /neither a folder nor in the Hugging Face cache .*huggingface-cli download/],
    ];
    for (const [base, adapter, why] of cases) {
      const out = join(root, 'refused');
      const r = merge(base, adapter, out);
      expect(r.stderr).toMatch(why);
      expect(r.status).toBe(2);
      expect(existsSync(out)).toBe(false);
      expect(readdirSync(root).filter((n) => n.includes('partial'))).toEqual([]);
    }
  });
});
