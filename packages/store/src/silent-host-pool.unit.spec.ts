import { channel } from 'node:diagnostics_channel';
import type postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { silentHostPool, type SilentHostPool } from './silent-host-pool';

// When the pool is replaced, judged from postgres.js's `postgres:pool` diagnostics messages. The
// pools here are stand-ins with only what the rule reads (their options) and `end`: what follows
// a replacement on a real database is in silent-database.int.spec.ts.
const poolChannel = channel('postgres:pool');
const LIMIT_S = 0.05; // query_timeout, and cancel_timeout: a second replacement waits their sum

function standInPool(n: number) {
  const ended: number[] = [];
  const pool = {
    n,
    options: {
      host: ['127.0.0.1'],
      port: [5432],
      database: 'test',
      query_timeout: LIMIT_S,
      cancel_timeout: LIMIT_S,
      parsers: n === 0 ? { 1184: 'drizzle' } : {},
      serializers: {},
    },
    end: async () => void ended.push(n),
  };
  return { pool, ended };
}

const unanswered = Object.assign(new Error('the cancel got no answer'), { code: 'CANCEL_UNANSWERED' });
const closed = (over: Record<string, unknown> = {}) =>
  poolChannel.publish({ event: 'close', host: '127.0.0.1', port: 5432, database: 'test', error: unanswered, ...over });

describe('silentHostPool', () => {
  let s: SilentHostPool | undefined;
  let opened: ReturnType<typeof standInPool>[] = [];
  const open = () => {
    const p = standInPool(opened.length);
    opened.push(p);
    return p.pool as unknown as postgres.Sql;
  };
  const inUse = () => (s!.client as unknown as { n: number }).n;
  afterEach(async () => {
    await s?.end();
    opened = [];
  });

  it('given a connection closed because its cancel went unanswered, then a fresh pool takes over with the old one’s parsers, and the old one is ended at once', () => {
    s = silentHostPool(open);
    closed();
    expect(opened).toHaveLength(2);
    expect(inUse()).toBe(1);
    expect(opened[1]!.pool.options.parsers).toEqual({ 1184: 'drizzle' });
    expect(opened[0]!.ended).toEqual([0]);
  });

  it('given connections closed for other reasons, or of another database or host, then the pool stays', () => {
    s = silentHostPool(open);
    closed({ error: Object.assign(new Error('gone'), { code: 'CONNECTION_CLOSED' }) });
    closed({ event: 'connect' });
    closed({ database: 'other' });
    closed({ host: '10.0.0.9' });
    closed({ port: 5433 });
    expect(opened).toHaveLength(1);
  });

  it('given a second old connection closed the same way right after, then the new pool is kept; one closed after a statement limit and a cancel’s wait replaces it', async () => {
    s = silentHostPool(open);
    closed();
    closed();
    expect(opened).toHaveLength(2);
    await new Promise((resolve) => setTimeout(resolve, 2 * LIMIT_S * 1000 + 20));
    closed();
    expect(opened).toHaveLength(3);
    expect(inUse()).toBe(2);
  });

  it('given the pool ended, then a late close replaces nothing', async () => {
    s = silentHostPool(open);
    await s.end();
    closed();
    expect(opened).toHaveLength(1);
    s = undefined;
  });
});
