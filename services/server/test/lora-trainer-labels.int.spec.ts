// The reference LoRA trainer's batch labels, checked in the real Python interpreter (the pure
// helper needs no torch): a model whose pad token is its EOS token must still see EOS in the loss.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './harness';

const EOS = 2;

function padAndLabel(features: { input_ids: number[]; attention_mask?: number[] }[], padId: number) {
  const script = [
    'import json, sys',
    `sys.path.insert(0, ${JSON.stringify(join(REPO_ROOT, 'trainers'))})`,
    'import lora_trainer',
    'args = json.load(sys.stdin)',
    'print(json.dumps(lora_trainer.pad_and_label(args["features"], args["pad_id"])))',
  ].join('\n');
  const out = execFileSync('python3', ['-c', script], { input: JSON.stringify({ features, pad_id: padId }) });
  return JSON.parse(out.toString()) as { input_ids: number[][]; attention_mask: number[][]; labels: number[][] };
}

describe('lora_trainer.pad_and_label', () => {
  it('keeps every real EOS in the labels when the pad token is the EOS token', () => {
    const batch = padAndLabel(
      [
        { input_ids: [5, 6, 7, EOS], attention_mask: [1, 1, 1, 1] },
        { input_ids: [8, EOS], attention_mask: [1, 1] },
      ],
      EOS,
    );
    expect(batch.input_ids).toEqual([
      [5, 6, 7, EOS],
      [8, EOS, EOS, EOS],
    ]);
    expect(batch.attention_mask).toEqual([
      [1, 1, 1, 1],
      [1, 1, 0, 0],
    ]);
    expect(batch.labels).toEqual([
      [5, 6, 7, EOS],
      [8, EOS, -100, -100],
    ]);
  });

  it('masks positions the tokenizer itself masked, and takes a missing mask as all real tokens', () => {
    const batch = padAndLabel([{ input_ids: [0, 9, 9], attention_mask: [0, 1, 1] }, { input_ids: [4] }], 0);
    expect(batch.labels).toEqual([
      [-100, 9, 9],
      [4, -100, -100],
    ]);
  });
});
