// The pure parts of live subscriptions: the bounded mailbox between the fan-out and one
// subscriber, and the subscription limits.
import { describe, expect, it } from 'vitest';
import { Mailbox, SubscriptionLimitError, SubscriptionLimits } from './live';

describe('Mailbox', () => {
  const overflow = () => new Error('fell behind');

  it('hands over everything waiting, in order, and waits when empty', async () => {
    const box = new Mailbox<number>(10, overflow);
    box.push([1, 2]);
    box.push([3]);
    expect(await box.take(undefined)).toEqual([1, 2, 3]);
    const next = box.take(undefined);
    box.push([4]);
    expect(await next).toEqual([4]);
  });

  it('past its capacity drops what it held and fails the next take (memory stays bounded)', async () => {
    const box = new Mailbox<number>(3, overflow);
    box.push([1, 2]);
    box.push([3, 4]);
    expect(box.failed).toBe(true);
    expect(box.size).toBe(0);
    box.push([5]);
    expect(box.size).toBe(0);
    await expect(box.take(undefined)).rejects.toThrow('fell behind');
  });

  it('a waiting take fails at once when the mailbox fails, and returns null when aborted', async () => {
    const box = new Mailbox<number>(3, overflow);
    const waiting = box.take(undefined);
    box.fail(new Error('database away'));
    await expect(waiting).rejects.toThrow('database away');

    const ac = new AbortController();
    const other = new Mailbox<number>(3, overflow);
    const pending = other.take(ac.signal);
    ac.abort();
    expect(await pending).toBeNull();
  });
});

describe('SubscriptionLimits', () => {
  it('refuses past the per-client limit with the variable that raises it, and counts a release once', () => {
    const limits = new SubscriptionLimits(10, 2);
    const a = limits.acquire('127.0.0.1');
    limits.acquire('127.0.0.1');
    expect(() => limits.acquire('127.0.0.1')).toThrow(SubscriptionLimitError);
    expect(() => limits.acquire('127.0.0.1')).toThrow(/limit per client is 2.*TRAINYARD_MAX_SUBSCRIPTIONS_PER_CLIENT/);
    a();
    a();
    expect(limits.count).toBe(1);
    limits.acquire('127.0.0.1');
    expect(limits.count).toBe(2);
  });

  it('refuses past the total limit whoever asks', () => {
    const limits = new SubscriptionLimits(3, 2);
    limits.acquire('a');
    limits.acquire('a');
    limits.acquire('b');
    expect(() => limits.acquire('c')).toThrow(/its limit is 3.*TRAINYARD_MAX_SUBSCRIPTIONS\b/);
  });
});
