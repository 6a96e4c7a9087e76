// answerWithin: health and metrics say "no answer" after a deadline instead of waiting as long as
// the database's statement limit.
import { describe, expect, it } from 'vitest';
import { answerWithin, NoAnswerError } from './answer-within';

describe('answerWithin', () => {
  it('given work that answers in time, then its value or its error', async () => {
    expect(await answerWithin(Promise.resolve(7), 1000)).toBe(7);
    await expect(answerWithin(Promise.reject(new Error('refused')), 1000)).rejects.toThrow('refused');
  });

  it('given work that never answers, then a NoAnswerError naming the wait', async () => {
    const err = await answerWithin(new Promise(() => {}), 20).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoAnswerError);
    expect((err as Error).message).toBe('no answer within 0.02 s');
  });
});
