import { describe, expect, it } from 'vitest';
import { limitProblem, TRAINING_LIMITS } from './index';

describe('training limits', () => {
  it('says what is wrong with a value in words with the field’s label', () => {
    expect(limitProblem('batchSize', 1)).toBeNull();
    expect(limitProblem('batchSize', 256)).toBeNull();
    expect(limitProblem('batchSize', 0)).toBe('Batch size must be a whole number from 1 to 256');
    expect(limitProblem('batchSize', 1.5)).toBe('Batch size must be a whole number from 1 to 256');
    expect(limitProblem('maxLength', 40_000)).toBe('Max length must be a whole number from 16 to 32768');
    expect(limitProblem('loraRank', null)).toBe('LoRA rank must be a whole number from 1 to 1024');
    expect(limitProblem('epochs', Number.NaN)).toBe('Epochs must be a whole number from 1 to 100');
  });
  it('has a label and a range for every field', () => {
    for (const l of Object.values(TRAINING_LIMITS)) expect(l.min).toBeLessThan(l.max);
  });
});
