// Users and tokens on both databases: a token is found by its hash only while usable, a token
// needs an existing user, revocation by id, by the token or by a prefix, and the owner filters
// of the task list and the audit query.
import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  addUser,
  AuthInputError,
  createToken,
  findTokenHolder,
  hashToken,
  listTasks,
  listTokens,
  listUsers,
  queryEvents,
  revokeToken,
  tables,
  TaskStore,
} from '.';
import { backendAvailable, backends, openTestStore, taskSpec, type TestDatabase } from '../test/support';

const DAY = 86_400_000;

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`users and tokens on ${backend.kind}`, () => {
    let t: TestDatabase;
    let store: TaskStore;
    beforeEach(async () => {
      ({ t, store } = await openTestStore(backend));
    });
    afterEach(async () => {
      await t?.close();
    });

    it('a token lets its user in until it is revoked; only its hash and prefix are stored', async () => {
      await addUser(t.db, { name: 'alice', admin: false });
      await addUser(t.db, { name: 'root', admin: true });
      const { token, info } = await createToken(t.db, { userName: 'alice', expiresAt: null });
      const now = new Date();
      expect(await findTokenHolder(t.db, token, now)).toEqual({ tokenId: info.id, user: 'alice', admin: false, expiresAt: null });
      const admin = await createToken(t.db, { userName: 'root', expiresAt: null });
      expect((await findTokenHolder(t.db, admin.token, now))?.admin).toBe(true);

      const rows = await t.db.select().from(tables.apiTokens);
      expect(JSON.stringify(rows)).not.toContain(token.slice(10));
      expect(rows.find((r) => r.id === info.id)).toMatchObject({ hash: hashToken(token), prefix: token.slice(0, 10) });

      const r = await revokeToken(t.db, info.id, now);
      expect(r.already).toBe(false);
      expect(r.info.revokedAt).not.toBeNull();
      expect(await findTokenHolder(t.db, token, new Date())).toBeNull();
      expect((await revokeToken(t.db, info.id, new Date())).already).toBe(true);
    });

    it('an expired token, an unknown one and garbage let nobody in', async () => {
      await addUser(t.db, { name: 'alice', admin: false });
      const soon = new Date(Date.now() + DAY).toISOString();
      const { token } = await createToken(t.db, { userName: 'alice', expiresAt: soon });
      expect(await findTokenHolder(t.db, token, new Date())).not.toBeNull();
      expect(await findTokenHolder(t.db, token, new Date(Date.now() + 2 * DAY))).toBeNull();
      expect(await findTokenHolder(t.db, `ty_${'A'.repeat(43)}`, new Date())).toBeNull();
      expect(await findTokenHolder(t.db, "ty_' OR 1=1 --", new Date())).toBeNull();
    });

    it('no token for a user who does not exist; no user twice', async () => {
      await expect(createToken(t.db, { userName: 'ghost', expiresAt: null })).rejects.toThrow(/no user named ghost/);
      expect(await t.db.select().from(tables.apiTokens)).toEqual([]);
      await addUser(t.db, { name: 'alice', admin: false });
      await expect(addUser(t.db, { name: 'alice', admin: true })).rejects.toThrow(AuthInputError);
      await expect(addUser(t.db, { name: 'scheduler', admin: true })).rejects.toThrow(/reserved/);
    });

    it('revokes by the token itself or by a prefix that names one token; an ambiguous prefix names the candidates', async () => {
      await addUser(t.db, { name: 'alice', admin: false });
      const a = await createToken(t.db, { userName: 'alice', expiresAt: null });
      const b = await createToken(t.db, { userName: 'alice', expiresAt: null });
      expect((await revokeToken(t.db, a.token, new Date())).info.id).toBe(a.info.id);
      expect((await revokeToken(t.db, b.token.slice(0, 9), new Date())).info.id).toBe(b.info.id);
      // Two tokens under one prefix: forced by writing the second one's prefix by hand.
      const c = await createToken(t.db, { userName: 'alice', expiresAt: null });
      const d = await createToken(t.db, { userName: 'alice', expiresAt: null });
      await t.db.update(tables.apiTokens).set({ prefix: c.info.prefix }).where(eq(tables.apiTokens.id, d.info.id));
      await expect(revokeToken(t.db, c.info.prefix.slice(0, 8), new Date())).rejects.toThrow(new RegExp(`${c.info.id}|${d.info.id}`));
      await expect(revokeToken(t.db, 'ty_zz_z', new Date())).rejects.toThrow(/no token matches/);
      await expect(revokeToken(t.db, 'nonsense', new Date())).rejects.toThrow(AuthInputError);
    });

    it('lists users with their usable tokens, and tokens per user newest first', async () => {
      await addUser(t.db, { name: 'bob', admin: false });
      await addUser(t.db, { name: 'alice', admin: true });
      const one = await createToken(t.db, { userName: 'alice', expiresAt: null });
      const two = await createToken(t.db, { userName: 'alice', expiresAt: null });
      await createToken(t.db, { userName: 'bob', expiresAt: new Date(Date.now() - 1000).toISOString() });
      await revokeToken(t.db, one.info.id, new Date());
      expect((await listUsers(t.db, new Date())).map((u) => [u.name, u.admin, u.tokens])).toEqual([
        ['alice', true, 1],
        ['bob', false, 0],
      ]);
      const alices = await listTokens(t.db, 'alice');
      expect(alices.map((x) => x.id)).toEqual([two.info.id, one.info.id]);
      expect(await listTokens(t.db)).toHaveLength(3);
    });

    it("lists and audits one owner's tasks only when asked to", async () => {
      await store.submit('ta', taskSpec('ta', { owner: 'alice' }), { actor: 'alice' });
      await store.submit('tb', taskSpec('tb', { owner: 'bob' }), { actor: 'bob' });
      await store.execute('tb', { type: 'cancel', reason: null }, { actor: 'bob' });
      expect((await listTasks(t.db, { limit: 10, owner: 'alice' })).items.map((x) => x.id)).toEqual(['ta']);
      expect((await listTasks(t.db, { limit: 10 })).items.map((x) => x.id).sort()).toEqual(['ta', 'tb']);
      const bobs = await queryEvents(t.db, { limit: 100, owner: 'bob' });
      expect(new Set(bobs.map((e) => e.streamId))).toEqual(new Set(['tb']));
      expect(bobs.find((e) => e.type === 'TaskCancelled')?.metadata.actor).toBe('bob');
      expect(await queryEvents(t.db, { limit: 100, owner: 'nobody' })).toEqual([]);
    });
  });
}
