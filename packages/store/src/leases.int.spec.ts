// Instances' leases on both databases: a claim, the heartbeat (an unbroken stretch, a gap that
// breaks it), taking over an expired lease (once, only by a peer fresh and unbroken for a whole
// term, never a fresh lease), the late heartbeat of an instance whose lease was taken, and a
// claim after it. Times are the database's: a spec moves a lease back in time by updating its row.
import { sql } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { claimLease, listLeases, renewLease, takeOverLease } from '.';
import { backendAvailable, backends, openTestDatabase, type TestDatabase } from '../test/support';

const TERM = 3000;
const GAP = 1000;

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`instance leases on ${backend.kind}`, () => {
    let t: TestDatabase;
    beforeEach(async () => {
      t = await openTestDatabase(backend);
    });
    afterEach(async () => {
      await t?.close();
    });

    /** Move a lease's times `ms` into the past. */
    const age = (runnerId: string, ms: { heartbeat?: number; unbroken?: number }) =>
      t.db.execute(sql`UPDATE instance_leases SET
        heartbeat_at = now() - (${ms.heartbeat ?? 0}::double precision * interval '1 millisecond'),
        renewed_since = now() - (${ms.unbroken ?? ms.heartbeat ?? 0}::double precision * interval '1 millisecond')
        WHERE runner_id = ${runnerId}`);
    const lease = async (id: string) => (await listLeases(t.db)).find((l) => l.runnerId === id)!;

    it('a claimed lease is renewed by its heartbeat; a beat after a gap starts its unbroken stretch again', async () => {
      expect(await claimLease(t.db, 'a')).toEqual({ takenBy: null });
      expect(await renewLease(t.db, 'b', GAP)).toEqual({ state: 'missing' });
      await age('a', { heartbeat: 200, unbroken: 5000 });
      const r = await renewLease(t.db, 'a', GAP);
      expect(r.state).toBe('renewed');
      if (r.state === 'renewed') {
        expect(r.lease.ageMs).toBeLessThan(100);
        expect(r.lease.unbrokenMs).toBeGreaterThanOrEqual(5000);
      }
      // Two seconds without a beat (a database outage, a stalled process): unbroken from now.
      await age('a', { heartbeat: 2000, unbroken: 9000 });
      const after = await renewLease(t.db, 'a', GAP);
      expect(after.state === 'renewed' && after.lease.unbrokenMs).toBeLessThan(100);
    });

    it('an expired lease is taken over once, by a peer that saw the database for a whole term; a fresh one never', async () => {
      await claimLease(t.db, 'a');
      await claimLease(t.db, 'b');
      await claimLease(t.db, 'c');
      // b just started (its unbroken stretch is short): it judges nobody, even an old lease.
      await age('a', { heartbeat: 10_000 });
      expect(await takeOverLease(t.db, 'a', 'b', TERM, GAP)).toBe(false);
      // b unbroken for a whole term; a not renewed for one: taken, once.
      await age('b', { heartbeat: 0, unbroken: 5000 });
      await age('c', { heartbeat: 0, unbroken: 5000 });
      expect(await takeOverLease(t.db, 'a', 'b', TERM, GAP)).toBe(true);
      expect(await takeOverLease(t.db, 'a', 'c', TERM, GAP)).toBe(false);
      expect((await lease('a')).takenBy).toBe('b');
      // A lease renewed within its term is nobody's to take, however long its holder ran.
      await age('c', { heartbeat: TERM - 1000, unbroken: 60_000 });
      expect(await takeOverLease(t.db, 'c', 'b', TERM, GAP)).toBe(false);
      // Nobody takes its own.
      await age('b', { heartbeat: 0, unbroken: 60_000 });
      expect(await takeOverLease(t.db, 'b', 'b', TERM, GAP)).toBe(false);
    });

    it('a peer whose own heartbeat is stale (it could not write either) takes nothing', async () => {
      await claimLease(t.db, 'a');
      await claimLease(t.db, 'b');
      await age('a', { heartbeat: 10_000 });
      await age('b', { heartbeat: 5000, unbroken: 60_000 });
      expect(await takeOverLease(t.db, 'a', 'b', TERM, GAP)).toBe(false);
    });

    it('the late heartbeat of a taken lease finds it taken; a claim afterwards says by whom and holds it afresh', async () => {
      await claimLease(t.db, 'a');
      await claimLease(t.db, 'b');
      await age('a', { heartbeat: 10_000 });
      await age('b', { heartbeat: 0, unbroken: 10_000 });
      expect(await takeOverLease(t.db, 'a', 'b', TERM, GAP)).toBe(true);
      expect(await renewLease(t.db, 'a', GAP)).toEqual({ state: 'taken', takenBy: 'b' });
      expect(await claimLease(t.db, 'a')).toEqual({ takenBy: 'b' });
      expect((await lease('a')).takenBy).toBeNull();
      expect((await renewLease(t.db, 'a', GAP)).state).toBe('renewed');
      expect(await claimLease(t.db, 'a')).toEqual({ takenBy: null });
    });
  });
}
