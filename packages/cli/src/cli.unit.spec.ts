// Pure parts of the CLI: flag parsing, presets, tables, durations.
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from 'commander';
import { DEFAULT_PRESET, PRESET_NAMES, PRESETS } from '@trainyard/catalogue';
import { devicesText, duration, gpuHoursText, groundsText, requestText, sparkline, speedText, table } from './format';
import { buildCreateInput, intArg, listArg, normalizeUrl, numberArg, parseDuration } from './parse';
import { UsageError } from './errors';
import { timeArg } from './commands/events';

describe('parseDuration', () => {
  it('reads units and combinations', () => {
    expect(parseDuration('6h')).toBe(6 * 3_600_000);
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2d')).toBe(172_800_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
  });
  it('refuses numbers without a unit and other text', () => {
    for (const bad of ['', '90', '6 hours', 'h', '1h 30m', '-5m', '5x'])
      expect(() => parseDuration(bad), bad).toThrow(InvalidArgumentError);
  });
});

describe('number and list flags', () => {
  it('parses whole numbers and numbers strictly', () => {
    expect(intArg('12')).toBe(12);
    expect(() => intArg('1.5')).toThrow(InvalidArgumentError);
    expect(() => intArg('abc')).toThrow(InvalidArgumentError);
    expect(numberArg('2e-4')).toBe(0.0002);
    expect(() => numberArg('x')).toThrow(InvalidArgumentError);
    expect(() => numberArg('')).toThrow(InvalidArgumentError);
  });
  it('accumulates repeated and comma-separated values', () => {
    expect(listArg('B', listArg('A,C', undefined))).toEqual(['A', 'C', 'B']);
  });
});

describe('buildCreateInput', () => {
  const base = { model: 'm', dataset: 'data/x.jsonl' };
  it('resolves the dataset against the current folder; without --preset sends the default preset (the one the panel selects)', () => {
    expect(buildCreateInput(base, '/home/u')).toEqual({
      model: 'm',
      datasetPath: '/home/u/data/x.jsonl',
      config: PRESETS[DEFAULT_PRESET].config,
    });
  });
  it('applies a preset, explicit flags over it', () => {
    expect(buildCreateInput({ ...base, preset: 'safe' }, '/').config).toEqual({
      batchSize: 1,
      gradientAccumulation: 16,
      maxLength: 512,
      load8bit: true,
    });
    expect(buildCreateInput({ ...base, preset: 'balanced' }, '/').config).toEqual({
      batchSize: 2,
      gradientAccumulation: 8,
      maxLength: 1024,
      load8bit: true,
    });
    expect(buildCreateInput({ ...base, preset: 'performance', batchSize: 8, '8bit': true }, '/').config).toEqual({
      batchSize: 8,
      gradientAccumulation: 4,
      maxLength: 2048,
      load8bit: true,
    });
    expect(buildCreateInput({ ...base, preset: 'performance' }, '/').config?.load8bit).toBe(false);
    // The panel's presets are the same table.
    for (const name of PRESET_NAMES) expect(buildCreateInput({ ...base, preset: name }, '/').config).toEqual(PRESETS[name].config);
  });
  it('--4bit or --no-8bit over a preset that loads in 8-bit turns the 8-bit off; --8bit with --4bit is left to the server', () => {
    expect(buildCreateInput({ ...base, preset: 'balanced', '4bit': true }, '/').config).toMatchObject({ load8bit: false, load4bit: true });
    expect(buildCreateInput({ ...base, preset: 'safe', '8bit': false }, '/').config).toMatchObject({ load8bit: false });
    expect(buildCreateInput({ ...base, preset: 'safe', '8bit': true, '4bit': true }, '/').config).toMatchObject({
      load8bit: true,
      load4bit: true,
    });
    expect(buildCreateInput({ ...base, '4bit': true }, '/').config).toEqual({
      ...PRESETS[DEFAULT_PRESET].config,
      load8bit: false,
      load4bit: true,
    });
    expect(() => buildCreateInput({ ...base, preset: 'turbo' }, '/')).toThrow(UsageError);
  });
  it('maps every flag', () => {
    const input = buildCreateInput(
      {
        ...base,
        name: 'n',
        outputDir: 'o',
        epochs: 2,
        gradAccum: 3,
        lr: 0.001,
        maxLength: 256,
        '4bit': true,
        loraRank: 4,
        loraAlpha: 8,
        timeout: 1000,
        idempotencyKey: 'k',
        simulate: '{"steps":3}',
      },
      '/',
    );
    expect(input).toEqual({
      model: 'm',
      datasetPath: '/data/x.jsonl',
      name: 'n',
      outputDir: 'o',
      timeoutMs: 1000,
      idempotencyKey: 'k',
      config: {
        // The default preset's batch size; --4bit turns its 8-bit off.
        batchSize: PRESETS[DEFAULT_PRESET].config.batchSize,
        load8bit: false,
        epochs: 2,
        gradientAccumulation: 3,
        learningRate: 0.001,
        maxLength: 256,
        load4bit: true,
        loraRank: 4,
        loraAlpha: 8,
        simulate: { steps: 3 },
      },
    });
  });
  it('sends --gpus, --gpu-memory and --shared as resources, only those given', () => {
    expect(buildCreateInput({ ...base, gpus: 2 }, '/').resources).toEqual({ gpus: 2 });
    expect(buildCreateInput({ ...base, gpuMemory: 12.5, shared: true }, '/').resources).toEqual({ gpuMemoryGb: 12.5, shared: true });
    expect(buildCreateInput(base, '/')).not.toHaveProperty('resources');
  });
  it('refuses --simulate that is not a JSON object', () => {
    for (const bad of ['{x', '[1]', '3', 'null']) expect(() => buildCreateInput({ ...base, simulate: bad }, '/'), bad).toThrow(UsageError);
  });
});

describe('normalizeUrl', () => {
  it('keeps http(s) URLs without a trailing slash and refuses others', () => {
    expect(normalizeUrl('http://h:8080/')).toBe('http://h:8080');
    expect(() => normalizeUrl('h:8080x')).toThrow(UsageError);
    expect(() => normalizeUrl('ftp://h')).toThrow(UsageError);
  });
});

describe('table and duration', () => {
  it('pads columns, right-aligns numbers, truncates long cells, keeps rows on one line', () => {
    const rows = [
      { a: 'x', n: 5, t: 'short' },
      { a: 'longer', n: 123, t: 'a very long text\nwith a newline' },
    ];
    const out = table(rows, [
      { header: 'A', get: (r) => r.a },
      { header: 'N', get: (r) => String(r.n), align: 'right' },
      { header: 'TEXT', get: (r) => r.t, max: 12 },
    ]);
    expect(out.split('\n')).toEqual(['A         N  TEXT', 'x         5  short', 'longer  123  a very long…']);
  });
  it('formats durations', () => {
    expect(duration(500)).toBe('500ms');
    expect(duration(1500)).toBe('1.5s');
    expect(duration(95_000)).toBe('1m35s');
    expect(duration(6 * 3_600_000)).toBe('6h');
  });
});

describe('devices, requests and placement grounds', () => {
  const grant = (deviceId: string, migProfile: string | null = null) => ({ deviceId, migProfile });
  it("names a task's devices: a gang joined by +, a MIG instance with its profile", () => {
    expect(devicesText([grant('gpu0'), grant('gpu1')])).toBe('gpu0+gpu1');
    expect(devicesText([grant('gpu3/mig1', '1g.10gb')])).toBe('gpu3/mig1 (1g.10gb)');
    expect(devicesText([])).toBe('-');
  });
  it('says what a task asks for, the memory per device and where the figure came from', () => {
    const r = (o: Partial<Parameters<typeof requestText>[0]>) =>
      requestText({ gpus: 1, memoryMb: null, shared: false, memorySource: null, ...o });
    expect(r({})).toBe('1 GPU');
    expect(r({ gpus: 2 })).toBe('2 GPUs');
    expect(r({ memoryMb: 30_720, memorySource: 'given' })).toBe('1 GPU, 30 GB');
    expect(r({ gpus: 2, memoryMb: 30_720, memorySource: 'given' })).toBe('2 GPUs, 30 GB each');
    expect(r({ shared: true, memoryMb: 12_288, memorySource: 'estimate' })).toBe('1 GPU, shared 12 GB (estimated)');
    expect(r({ shared: true, memoryMb: 3_226, memorySource: 'given' })).toBe('1 GPU, shared 3.2 GB');
  });
  it('says why a task started when it did', () => {
    const g = {
      policy: 'backfill',
      ahead: 0,
      priority: 0,
      share: 0,
      backfilled: false,
      reservation: null,
      reserveFraction: 0.2,
      devices: [{ deviceId: 'gpu1', memoryMb: 81_920, externalMemoryMb: 0, heldMb: 0, holders: 0 }],
    };
    expect(groundsText(null)).toBe('');
    expect(groundsText(g)).toBe('nothing waiting ahead of it (backfill)');
    expect(groundsText({ ...g, policy: 'fifo', ahead: 1 })).toBe('started ahead of 1 task that could not start (fifo)');
    const startAt = new Date(2026, 0, 31, 14, 5).getTime();
    expect(groundsText({ ...g, ahead: 2, backfilled: true, reservation: { taskId: 'tH', startAt, deviceIds: ['gpu0', 'gpu1'] } })).toBe(
      'backfilled ahead of 2 tasks without delaying task tH (reserved gpu0, gpu1 from 2026-01-31 14:05:00) (backfill)',
    );
    const shared = { ...g.devices[0]!, deviceId: 'gpu3/mig1', heldMb: 3072, holders: 2 };
    expect(groundsText({ ...g, devices: [shared] })).toBe('nothing waiting ahead of it, beside 2 tasks on gpu3/mig1 (backfill)');
  });
});

describe('training figures', () => {
  it('draws a sparkline: block heights between the least and the most, means of buckets when narrower', () => {
    expect(sparkline([3, 2, 1, 0], 10)).toBe('█▆▃▁');
    expect(sparkline([0, 0, 8, 8], 2)).toBe('▁█');
    expect(sparkline([5, 5, 5], 3)).toBe('▁▁▁');
    expect(sparkline([], 5)).toBe('');
    expect(
      sparkline(
        Array.from({ length: 1000 }, (_, i) => 1000 - i),
        40,
      ),
    ).toHaveLength(40);
  });
  it('says speed in steps per second, or seconds per step when slow', () => {
    expect(speedText(12.4)).toBe('12 steps/s');
    expect(speedText(2.44)).toBe('2.4 steps/s');
    expect(speedText(0.2)).toBe('5.0 s/step');
  });
  it('rounds GPU-hours for people', () => {
    expect(gpuHoursText(0.001)).toBe('<0.01');
    expect(gpuHoursText(0)).toBe('0.00');
    expect(gpuHoursText(0.4249)).toBe('0.42');
    expect(gpuHoursText(12.34)).toBe('12.3');
  });
});

describe('--from / --to', () => {
  it('takes a date alone as the start of that day, local time; a duration as that long ago; other text as it is', () => {
    expect(timeArg('2026-01-31')).toBe(new Date(2026, 0, 31).toISOString());
    expect(timeArg(' 2024-02-29 ')).toBe(new Date(2024, 1, 29).toISOString());
    expect(() => timeArg('2025-02-29')).toThrow(InvalidArgumentError);
    expect(() => timeArg('2026-13-01')).toThrow(/is not a date/);
    expect(Math.abs(Date.parse(timeArg('1h')) - (Date.now() - 3_600_000))).toBeLessThan(60_000);
    expect(timeArg('2026-01-31T12:00:00Z')).toBe('2026-01-31T12:00:00Z');
  });
});

describe('tables that fit the terminal', () => {
  const rows = [{ id: 't1', name: 'a rather long task name', status: 'TRAINING', where: 'gpu0+gpu1', when: '2026-01-01 00:00:00' }];
  const cols = [
    { header: 'ID', get: (r: (typeof rows)[number]) => r.id },
    { header: 'NAME', get: (r: (typeof rows)[number]) => r.name, min: 6 },
    { header: 'STATUS', get: (r: (typeof rows)[number]) => r.status },
    { header: 'WHERE', get: (r: (typeof rows)[number]) => r.where, drop: 1 },
    { header: 'WHEN', get: (r: (typeof rows)[number]) => r.when, drop: 2 },
  ];
  it('leaves out the columns marked to drop, highest first, then cuts those that may give', () => {
    expect(table(rows, cols)).toBe(
      'ID  NAME                     STATUS    WHERE      WHEN\nt1  a rather long task name  TRAINING  gpu0+gpu1  2026-01-01 00:00:00',
    );
    expect(table(rows, cols, 60).split('\n')[0]).toBe('ID  NAME                     STATUS    WHERE');
    expect(table(rows, cols, 40)).toBe('ID  NAME                     STATUS\nt1  a rather long task name  TRAINING');
    expect(table(rows, cols, 30)).toBe('ID  NAME              STATUS\nt1  a rather long t…  TRAINING');
    // No narrower than the columns that may not give.
    expect(table(rows, cols, 5).split('\n')[1]).toBe('t1  a rat…  TRAINING');
  });
});
