// The progress bar's line: never wider than the terminal, and what gives first when it is narrow.
import { describe, expect, it } from 'vitest';
import { barLine, clockText } from './live';

const training = { status: 'TRAINING', percent: 42.5, detail: 'epoch 1/3 step 85/200 loss 0.4321', elapsedMs: 83_000 };

describe('barLine: given a terminal width, then one line that fits it', () => {
  it('at 160 columns: the whole bar (30 wide), percent, detail and elapsed time', () => {
    const line = barLine(training, 160);
    expect(line).toBe(`TRAINING [${'█'.repeat(13)}${'░'.repeat(17)}] 42% epoch 1/3 step 85/200 loss 0.4321  1:23`);
    expect(line.length).toBeLessThan(160);
  });

  it('at 60 columns: a narrower bar, everything else kept, within 59 characters', () => {
    const line = barLine(training, 60);
    expect(line.length).toBeLessThanOrEqual(59);
    expect(line).toMatch(/^TRAINING \[[█░]{8,}\] 42% epoch 1\/3 step 85\/200 loss 0\.4321/);
  });

  it('narrower: the elapsed time goes, then the detail is cut with …, then the bar goes', () => {
    for (const columns of [20, 30, 40, 50, 59, 60, 61, 80, 100, 120, 160, 200])
      expect(barLine(training, columns).length).toBeLessThan(columns);
    expect(barLine(training, 56)).not.toContain('1:23');
    expect(barLine(training, 40)).toMatch(/^TRAINING \[[█░]{8}\] 42% .*…$/);
    expect(barLine(training, 20)).toBe('TRAINING 42% epoch…');
  });

  it('without progress yet: the bar and the percent alone', () => {
    expect(barLine({ status: 'QUEUED', percent: 0, detail: '', elapsedMs: 5000 }, 60)).toBe(`QUEUED [${'░'.repeat(30)}] 0%  0:05`);
  });

  it('never draws more than full', () => {
    expect(barLine({ ...training, percent: 130 }, 160)).toContain(`[${'█'.repeat(30)}] 100%`);
  });
});

describe('clockText', () => {
  it('minutes and seconds, hours when there are some', () => {
    expect([0, 83_000, 3_723_000].map(clockText)).toEqual(['0:00', '1:23', '1:02:03']);
  });
});
