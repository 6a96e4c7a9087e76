import { describe, expect, it } from 'vitest';
import {
  checkArtifact,
  checkCheckpoint,
  ProgressThrottle,
  parseTrainerLine,
  progressPercent,
  progressRecord,
  type TrainerMessage,
} from './protocol';
import { parseProcStat } from './proc';

function message(line: string): TrainerMessage {
  const parsed = parseTrainerLine(line);
  if (parsed.kind !== 'message') throw new Error(`expected a message for ${line}`);
  return parsed.message;
}

describe('parseTrainerLine', () => {
  it('parses the phase message', () => {
    expect(message('{"type":"phase","phase":"training"}')).toEqual({
      type: 'phase',
      phase: 'training',
    });
    expect(message('  {"type":"phase","phase":"training"}\r')).toEqual({
      type: 'phase',
      phase: 'training',
    });
  });

  it('treats other phases as log lines', () => {
    expect(parseTrainerLine('{"type":"phase","phase":"eval"}')).toEqual({ kind: 'log' });
    expect(parseTrainerLine('{"type":"phase"}')).toEqual({ kind: 'log' });
  });

  it('parses full and partial progress, dropping unknown fields', () => {
    expect(
      message('{"type":"progress","epoch":1,"totalEpochs":3,"step":10,"totalSteps":300,"loss":1.23,"learningRate":0.0002,"lr":0.1}'),
    ).toEqual({
      type: 'progress',
      epoch: 1,
      totalEpochs: 3,
      step: 10,
      totalSteps: 300,
      loss: 1.23,
      learningRate: 0.0002,
    });
    expect(message('{"type":"progress"}')).toEqual({ type: 'progress' });
    expect(message('{"type":"progress","loss":0}')).toEqual({ type: 'progress', loss: 0 });
    expect(message('{"type":"progress","step":300,"totalSteps":300}')).toEqual({
      type: 'progress',
      step: 300,
      totalSteps: 300,
    });
  });

  it.each([
    ['negative', '{"type":"progress","step":-1}'],
    ['string number', '{"type":"progress","step":"3"}'],
    ['null', '{"type":"progress","loss":null}'],
    ['step beyond total', '{"type":"progress","step":301,"totalSteps":300}'],
    ['huge exponent (Infinity)', '{"type":"progress","loss":1e999}'],
    ['boolean', '{"type":"progress","epoch":true}'],
    ['negative learning rate', '{"type":"progress","step":1,"learningRate":-0.1}'],
  ])('treats invalid progress (%s) as a log line', (_name, line) => {
    expect(parseTrainerLine(line)).toEqual({ kind: 'log' });
  });

  it('parses artifacts and rejects bad paths', () => {
    expect(message('{"type":"artifact","path":"/out/adapter"}')).toEqual({
      type: 'artifact',
      path: '/out/adapter',
    });
    expect(parseTrainerLine('{"type":"artifact","path":""}')).toEqual({ kind: 'log' });
    expect(parseTrainerLine('{"type":"artifact","path":3}')).toEqual({ kind: 'log' });
    expect(parseTrainerLine('{"type":"artifact"}')).toEqual({ kind: 'log' });
  });

  it('parses checkpoints: an absolute path and a whole step', () => {
    expect(message('{"type":"checkpoint","path":"/out/t1/checkpoints/step-50","step":50}')).toEqual({
      type: 'checkpoint',
      path: '/out/t1/checkpoints/step-50',
      step: 50,
    });
    expect(message('{"step":0,"type":"checkpoint","path":"/c","extra":true}')).toEqual({ type: 'checkpoint', path: '/c', step: 0 });
    expect(message(JSON.stringify({ type: 'checkpoint', path: `/${'x'.repeat(4095)}`, step: 1 }))).toMatchObject({ type: 'checkpoint' });
    expect(message(`{"type":"checkpoint","path":"/c","step":${Number.MAX_SAFE_INTEGER}}`)).toMatchObject({ step: Number.MAX_SAFE_INTEGER });
  });

  it.each([
    ['no path', '{"type":"checkpoint","step":1}'],
    ['an empty path', '{"type":"checkpoint","path":"","step":1}'],
    ['a relative path', '{"type":"checkpoint","path":"checkpoints/step-1","step":1}'],
    ['a dot path', '{"type":"checkpoint","path":"./step-1","step":1}'],
    ['a non-string path', '{"type":"checkpoint","path":["/c"],"step":1}'],
    ['a path over 4096 characters', JSON.stringify({ type: 'checkpoint', path: `/${'x'.repeat(4096)}`, step: 1 })],
    ['no step', '{"type":"checkpoint","path":"/c"}'],
    ['a negative step', '{"type":"checkpoint","path":"/c","step":-1}'],
    ['a fractional step', '{"type":"checkpoint","path":"/c","step":1.5}'],
    ['a string step', '{"type":"checkpoint","path":"/c","step":"1"}'],
    ['a null step', '{"type":"checkpoint","path":"/c","step":null}'],
    ['an infinite step', '{"type":"checkpoint","path":"/c","step":1e999}'],
    ['an unsafe integer step', '{"type":"checkpoint","path":"/c","step":9007199254740993}'],
    ['a truncated line', '{"type":"checkpoint","path":"/c","step":1'],
  ])('treats a checkpoint with %s as a log line', (_name, line) => {
    expect(parseTrainerLine(line)).toEqual({ kind: 'log' });
  });

  it.each([
    '',
    'loading model llama ...',
    '{',
    '{"type":"progress"',
    '[1,2,3]',
    'null',
    '"progress"',
    '{"type":"weird","phase":"training"}',
    '{"phase":"training"}',
    '{"type":"progress","step":1} trailing',
    '{"type":"progress" junk that only starts like a message',
    '{"type":"artifact","path":"/x"',
    '{"type":"phase","phase":"training"}}',
    '{"type":"progress","step":1}… [cut 10 bytes]',
  ])('treats %j as a log line', (line) => {
    expect(parseTrainerLine(line)).toEqual({ kind: 'log' });
  });
});

describe('checkArtifact', () => {
  const out = '/data/outputs/t1';
  const limits = { maxPerTask: 3, maxPathChars: 64 };

  it('accepts the output folder and paths inside it, relative ones taken inside it', () => {
    expect(checkArtifact(out, out, 0, limits)).toEqual({ ok: true, path: out });
    expect(checkArtifact(`${out}/adapter`, out, 0, limits)).toEqual({ ok: true, path: `${out}/adapter` });
    expect(checkArtifact('adapter/final', out, 2, limits)).toEqual({ ok: true, path: `${out}/adapter/final` });
    expect(checkArtifact(`${out}/a/../b`, out, 0, limits)).toEqual({ ok: true, path: `${out}/b` });
    expect(checkArtifact(`${out}/..x`, out, 0, limits)).toEqual({ ok: true, path: `${out}/..x` });
  });

  it.each([
    ['an absolute path elsewhere', '/etc/passwd'],
    ['a sibling folder', '/data/outputs/t2/adapter'],
    ['a prefix that is not the folder', '/data/outputs/t1-other'],
    ['a .. escape', `${out}/../t2`],
    ['a relative .. escape', '../../../etc'],
    ['the parent itself', '..'],
  ])('refuses %s', (_name, path) => {
    const v = checkArtifact(path, out, 0, limits);
    expect(v.ok).toBe(false);
    expect(!v.ok && v.reason).toMatch(/outside the task's output folder/);
  });

  it('refuses paths over the length limit, as given or as resolved', () => {
    expect(checkArtifact(`${out}/${'x'.repeat(64)}`, out, 0, limits)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/81 characters long, over the limit of 64/),
    });
    expect(checkArtifact('y'.repeat(60), out, 0, limits)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/resolved path is over the limit/),
    });
  });

  it('refuses control characters and lone surrogates', () => {
    expect(checkArtifact(`${out}/a\u0000b`, out, 0, limits).ok).toBe(false);
    expect(checkArtifact(`${out}/a\nb`, out, 0, limits).ok).toBe(false);
    expect(checkArtifact(`${out}/a\uD800`, out, 0, limits).ok).toBe(false);
    expect(checkArtifact(`${out}/🦜`, out, 0, limits).ok).toBe(true);
  });

  it('refuses artifacts past the count per task', () => {
    expect(checkArtifact(out, out, 3, limits)).toMatchObject({ ok: false, reason: expect.stringMatching(/already has 3 artifacts/) });
  });
});

describe('checkCheckpoint', () => {
  const out = '/data/outputs/t1';
  const check = (path: string, step = 7) => checkCheckpoint({ type: 'checkpoint', path, step }, out);

  it('accepts paths inside the output folder, normalised, with their step', () => {
    expect(check(`${out}/checkpoints/step-7`)).toEqual({ ok: true, path: `${out}/checkpoints/step-7`, step: 7 });
    expect(check(`${out}/checkpoints/../checkpoints/step-7/`, 0)).toEqual({ ok: true, path: `${out}/checkpoints/step-7`, step: 0 });
    expect(check(out)).toEqual({ ok: true, path: out, step: 7 });
    expect(check(`${out}/🦜`).ok).toBe(true);
  });

  it.each([
    ['an absolute path elsewhere', '/etc/passwd'],
    ['a sibling task', '/data/outputs/t2/checkpoints/step-7'],
    ['a prefix that is not the folder', '/data/outputs/t1-other/step-7'],
    ['a .. escape', `${out}/checkpoints/../../t2/step-7`],
    ['the parent', '/data/outputs'],
  ])('refuses %s', (_name, path) => {
    expect(check(path)).toMatchObject({ ok: false, reason: expect.stringMatching(/outside the task's output folder/) });
  });

  it('refuses relative paths, control characters, lone surrogates and overlong paths (messages not from the parse)', () => {
    expect(check('checkpoints/step-7')).toMatchObject({ ok: false, reason: 'its path is not absolute' });
    expect(check(`${out}/a\u0000b`)).toMatchObject({ ok: false, reason: expect.stringMatching(/control characters/) });
    expect(check(`${out}/a\nb`).ok).toBe(false);
    expect(check(`${out}/a\uD800`).ok).toBe(false);
    expect(check(`${out}/${'x'.repeat(4096)}`)).toMatchObject({ ok: false, reason: expect.stringMatching(/over the limit of 4096/) });
  });

  it('agrees with the parse on a line a trainer printed', () => {
    const parsed = message(JSON.stringify({ type: 'checkpoint', path: `${out}/checkpoints/step-3`, step: 3 }));
    expect(parsed.type === 'checkpoint' && checkCheckpoint(parsed, out)).toEqual({ ok: true, path: `${out}/checkpoints/step-3`, step: 3 });
  });
});

describe('progressPercent', () => {
  it('prefers steps, falls back to epochs, rounds to one decimal', () => {
    expect(progressPercent({ step: 10, totalSteps: 300, epoch: 3, totalEpochs: 3 })).toBe(3.3);
    expect(progressPercent({ epoch: 1, totalEpochs: 3 })).toBe(33.3);
    expect(progressPercent({ step: 2, totalSteps: 3 })).toBe(66.7);
    expect(progressPercent({ step: 5, epoch: 2, totalEpochs: 4 })).toBe(50);
  });

  it('clamps and handles unknowns', () => {
    expect(progressPercent({})).toBe(0);
    expect(progressPercent({ step: 5, totalSteps: 0 })).toBe(0);
    expect(progressPercent({ epoch: 5, totalEpochs: 3 })).toBe(100);
    expect(progressPercent({ step: null, totalSteps: null, epoch: 1, totalEpochs: 2 })).toBe(50);
  });

  it('maps progress to the event shape', () => {
    expect(progressRecord({ step: 1, loss: 2 })).toEqual({
      epoch: null,
      totalEpochs: null,
      step: 1,
      totalSteps: null,
      loss: 2,
      learningRate: null,
    });
    expect(progressRecord({ step: 2, learningRate: 1e-4 }).learningRate).toBe(1e-4);
  });
});

describe('ProgressThrottle', () => {
  it('records the first report and then at most one per interval', () => {
    const t = new ProgressThrottle(2000);
    expect(t.offer({ epoch: 1, step: 1, totalSteps: 100 }, 1000)).toBe(true);
    expect(t.offer({ epoch: 1, step: 2, totalSteps: 100 }, 1500)).toBe(false);
    expect(t.offer({ epoch: 1, step: 3, totalSteps: 100 }, 2999)).toBe(false);
    expect(t.offer({ epoch: 1, step: 4, totalSteps: 100 }, 3000)).toBe(true);
    expect(t.offer({ epoch: 1, step: 5, totalSteps: 100 }, 4000)).toBe(false);
    // The interval counts from the last recorded report, not the last offered one.
    expect(t.offer({ epoch: 1, step: 6, totalSteps: 100 }, 5000)).toBe(true);
  });

  it('records every epoch change', () => {
    const t = new ProgressThrottle(10_000);
    expect(t.offer({ epoch: 1, step: 1 }, 0)).toBe(true);
    expect(t.offer({ epoch: 1, step: 2 }, 1)).toBe(false);
    expect(t.offer({ epoch: 2, step: 3 }, 2)).toBe(true);
    expect(t.offer({ epoch: 2, step: 4 }, 3)).toBe(false);
    expect(t.offer({ epoch: 3, step: 5 }, 4)).toBe(true);
  });

  it('records the final step', () => {
    const t = new ProgressThrottle(10_000);
    expect(t.offer({ step: 1, totalSteps: 3 }, 0)).toBe(true);
    expect(t.offer({ step: 2, totalSteps: 3 }, 1)).toBe(false);
    expect(t.offer({ step: 3, totalSteps: 3 }, 2)).toBe(true);
  });

  it('keeps the event count far below the step count', () => {
    const t = new ProgressThrottle(2000);
    let recorded = 0;
    // 3 epochs x 1000 steps, one step every 10 ms.
    for (let step = 1; step <= 3000; step++) {
      const epoch = Math.ceil(step / 1000);
      if (t.offer({ epoch, totalEpochs: 3, step, totalSteps: 3000 }, step * 10)) recorded++;
    }
    expect(recorded).toBeGreaterThanOrEqual(3 + 1);
    expect(recorded).toBeLessThan(30);
  });

  it('reset makes the next report recorded', () => {
    const t = new ProgressThrottle();
    expect(t.offer({ step: 1 }, 0)).toBe(true);
    expect(t.offer({ step: 2 }, 1)).toBe(false);
    t.reset();
    expect(t.offer({ step: 3 }, 2)).toBe(true);
  });

  it('rejects a bad interval', () => {
    expect(() => new ProgressThrottle(-1)).toThrow(RangeError);
  });
});

describe('parseProcStat', () => {
  const rest = (state: string, start: string) =>
    `${state} 1 100 100 0 -1 4194560 200 0 0 0 5 3 0 0 20 0 1 0 ${start} 1000 50 18446744073709551615`;

  it('reads state and field 22', () => {
    expect(parseProcStat(`1234 (node) ${rest('S', '987654')}\n`)).toEqual({
      state: 'S',
      startTime: '987654',
    });
  });

  it('copes with spaces and parentheses in comm', () => {
    expect(parseProcStat(`1234 (my (odd) ) name) ${rest('Z', '42')}`)).toEqual({
      state: 'Z',
      startTime: '42',
    });
  });

  it('returns null for garbage', () => {
    expect(parseProcStat('')).toBeNull();
    expect(parseProcStat('1234 (x) S 1 2')).toBeNull();
  });
});
