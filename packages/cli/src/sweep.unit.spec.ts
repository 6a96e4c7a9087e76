import { describe, expect, it } from 'vitest';
import { expandSweep, parseSweep, sweepPoints } from './sweep';

describe('submit --sweep', () => {
  it('given a grid of two settings, then every combination, the first setting varying slowest', () => {
    const axes = parseSweep('learningRate=1e-4,2e-4 loraRank=8,16');
    expect(axes).toEqual([
      { key: 'learningRate', values: [1e-4, 2e-4] },
      { key: 'loraRank', values: [8, 16] },
    ]);
    expect(sweepPoints(axes)).toEqual([
      { learningRate: 1e-4, loraRank: 8 },
      { learningRate: 1e-4, loraRank: 16 },
      { learningRate: 2e-4, loraRank: 8 },
      { learningRate: 2e-4, loraRank: 16 },
    ]);
  });

  it('given flag spellings and booleans, then the config names', () => {
    expect(parseSweep('  lr=1e-3  lora-rank=4 8bit=true,false ')).toEqual([
      { key: 'learningRate', values: [1e-3] },
      { key: 'loraRank', values: [4] },
      { key: 'load8bit', values: [true, false] },
    ]);
  });

  it('given a bad grid, then a usage error that says what is wrong', () => {
    expect(() => parseSweep('')).toThrow(/at least one setting/);
    expect(() => parseSweep('loraRank')).toThrow(/not setting=value,value/);
    expect(() => parseSweep('dropout=0.1')).toThrow(/no setting called "dropout"/);
    expect(() => parseSweep('loraRank=8 lora-rank=16')).toThrow(/loraRank is given twice/);
    expect(() => parseSweep('loraRank=8,')).toThrow(/empty value/);
    expect(() => parseSweep('loraRank=eight')).toThrow(/takes numbers, not "eight"/);
    expect(() => parseSweep('load8bit=yes')).toThrow(/true or false/);
  });

  it('given the base input of the other flags, then one input per point, the point over the config, named after it', () => {
    const base = {
      model: 'm',
      datasetPath: '/d.jsonl',
      name: 'sweep',
      idempotencyKey: 'k',
      config: { epochs: 2, learningRate: 5e-5, batchSize: 4 },
    };
    const inputs = expandSweep(base, parseSweep('learningRate=1e-4,2e-4 loraRank=8'));
    expect(inputs).toEqual([
      {
        model: 'm',
        datasetPath: '/d.jsonl',
        name: 'sweep learningRate=0.0001 loraRank=8',
        config: { epochs: 2, learningRate: 1e-4, batchSize: 4, loraRank: 8 },
      },
      {
        model: 'm',
        datasetPath: '/d.jsonl',
        name: 'sweep learningRate=0.0002 loraRank=8',
        config: { epochs: 2, learningRate: 2e-4, batchSize: 4, loraRank: 8 },
      },
    ]);
    // Without --name the service names each task.
    expect(expandSweep({ model: 'm', datasetPath: '/d' }, parseSweep('loraRank=8,16')).map((i) => i.name)).toEqual([undefined, undefined]);
  });
});
