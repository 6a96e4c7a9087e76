// The service's Postgres pool, replaced whole when the host it reached goes silent.
//
// A host that vanishes without a word (powered off, paused, its address moved to a standby)
// leaves every connection open to it waiting for answers that never come; TCP takes many minutes
// to give up. With a query timeout, postgres.js cancels a statement that waits too long and,
// when the cancel gets no answer either, closes that connection. But it finds the silent
// connections one at a time, each when a statement is next sent on it, a query timeout each; and
// it cannot let an idle silent one go (a graceful close waits for an answer too), so a full pool
// of them stays full. So the first connection closed that way replaces the pool: a fresh one
// takes every statement from then on, and the old one is ended at once (its statements fail as
// lost connections, which their callers retry). postgres.js says why a connection closed only on
// its `postgres:pool` diagnostics channel.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type postgres from 'postgres';
import { isUnansweredCancel } from './errors';

export interface SilentHostPool {
  /** Stands for the pool in use: hand it to drizzle and to anything that takes a postgres.js client. */
  readonly client: postgres.Sql;
  end(options?: { timeout?: number }): Promise<void>;
}

export function silentHostPool(open: () => postgres.Sql): SilentHostPool {
  let pool = open();
  let ended = false;
  let replacedAt = -Infinity;
  const client = new Proxy(function sql() {} as unknown as postgres.Sql, {
    get: (_target, key) => {
      const value = Reflect.get(pool, key, pool) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(pool) : value;
    },
    set: (_target, key, value) => Reflect.set(pool, key, value, pool),
    apply: (_target, _this, args) => Reflect.apply(pool as unknown as (...a: unknown[]) => unknown, pool, args),
  });
  const replace = () => {
    const old = pool;
    pool = open();
    replacedAt = performance.now();
    // drizzle set its parsers and serializers on the first pool's options (dates and JSON as text).
    Object.assign(pool.options.parsers, old.options.parsers);
    Object.assign(pool.options.serializers, old.options.serializers);
    void old.end({ timeout: 0 }).catch(() => {});
  };
  const onPoolEvent = (message: unknown) => {
    const m = message as { event?: string; host?: string; port?: number; database?: string; error?: unknown };
    if (ended || m.event !== 'close' || !isUnansweredCancel(m.error)) return;
    const { host, port, database, query_timeout, cancel_timeout } = pool.options;
    // Another of the old pool's connections, closed the same way before the old pool ended: none
    // of the new pool's can have been cancelled and gone unanswered this soon.
    if (performance.now() - replacedAt < (query_timeout + cancel_timeout) * 1000) return;
    if (m.database === database && host.includes(m.host ?? '') && port.includes(m.port ?? -1)) replace();
  };
  subscribe('postgres:pool', onPoolEvent);
  return {
    client,
    end(options) {
      ended = true;
      unsubscribe('postgres:pool', onPoolEvent);
      return pool.end(options);
    },
  };
}
