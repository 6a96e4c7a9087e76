// `trainyard admin …`: users and tokens for tokens mode (TRAINYARD_AUTH=tokens). These verbs
// write to the service's database directly, found as the service finds it (DATABASE_URL, or
// PGlite under TRAINYARD_DATA_DIR; TRAINYARD_DB_SCHEMA), so they run on the service's machine
// and the first admin needs no token. They are the only way to make users and tokens: the API
// has none.
import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CliError, UsageError } from '../errors';
import { table, time } from '../format';
import { err, out, printJson } from '../io';

type Store = typeof import('@trainyard/store');
type Json = { json?: boolean };

/** The argument or flag each input of the store's checks comes from. */
const FLAG_OF: Record<string, string> = { name: '<name>', user: '--user', expires: '--expires', token: '<id-or-prefix>' };

/**
 * The store, loaded only for these verbs (the database drivers are not needed to talk to the API),
 * and a database opened for one command. PGlite is one process at a time: while a service holds
 * the data folder, another process must not open it.
 */
async function withDatabase<T>(fn: (store: Store, db: Awaited<ReturnType<Store['openDatabase']>>['db']) => Promise<T>): Promise<T> {
  const store = await import('@trainyard/store');
  const storage = store.storageFromEnv(process.env);
  if (!storage.url) refuseWhileServiceRuns(store.instanceLockFile(storage.dataRoot), storage.dataRoot);
  const database = await store.openDatabase(storage);
  try {
    return await fn(store, database.db);
  } catch (e) {
    if (e instanceof store.AuthInputError) throw new UsageError(e.message.replace(/^[a-z]+:/, `${FLAG_OF[e.field] ?? e.field}:`));
    throw e;
  } finally {
    await database.close();
  }
}

function refuseWhileServiceRuns(lockFile: string, dataRoot: string): void {
  if (!existsSync(lockFile)) return;
  const pid = Number(readFileSync(lockFile, 'utf8').trim().split(/\s+/)[0]);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || !isAlive(pid)) return;
  throw new CliError(
    `a Trainyard service (pid ${pid}) has the embedded database in ${dataRoot} open, and PGlite takes one process at a time: ` +
      `stop the service, run this again, then start it (a service on Postgres, with DATABASE_URL, needs no stop). ` +
      `If no service runs, remove ${lockFile}.`,
  );
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The user named by `--user` on the command line. It is also the program's option (who is acting,
 * which may come from TRAINYARD_USER), and commander parses a program option wherever it stands:
 * here it counts only when written on this command line, never taken from the environment.
 */
function userFlag(cmd: Command): string | undefined {
  let root = cmd;
  while (root.parent) root = root.parent;
  return root.getOptionValueSource('user') === 'cli' ? root.opts<{ user?: string }>().user : undefined;
}

const tokenState = (t: { expiresAt: string | null; revokedAt: string | null }, now: Date) =>
  t.revokedAt !== null ? 'revoked' : t.expiresAt !== null && Date.parse(t.expiresAt) <= now.getTime() ? 'expired' : 'active';

export function registerAdminCommands(program: Command): void {
  const admin = program
    .command('admin')
    .description("users and tokens (tokens mode), written to the service's database directly: run it on the service's machine")
    .addHelpText(
      'after',
      `
The database is the service's: DATABASE_URL (Postgres) or the embedded one under TRAINYARD_DATA_DIR
(default ./.trainyard; stop the service first), and TRAINYARD_DB_SCHEMA.

First admin:
  trainyard admin user add alice --admin
  trainyard admin token create --user alice --expires 30d     (prints the token once)
  TRAINYARD_AUTH=tokens npm start`,
    );

  const user = admin.command('user').description('add and list users');
  user
    .command('add')
    .description('add a user (names: letters, digits and . _ @ -)')
    .argument('<name>', "the user's name: owner of their tasks and actor of their events")
    .option('--admin', 'may see and manage every task, and the service’s internals')
    .option('--json', 'print the user as JSON')
    .action(async (name: string, opts: Json & { admin?: boolean }) => {
      const u = await withDatabase((store, db) => store.addUser(db, { name, admin: Boolean(opts.admin) }));
      if (opts.json) return printJson(u);
      out(`added user ${u.name}${u.admin ? ' (admin)' : ''}; give them a token: trainyard admin token create --user ${u.name}`);
    });
  user
    .command('list')
    .description('the users, with how many usable tokens each has')
    .option('--json', 'print the users as JSON')
    .action(async (opts: Json) => {
      const users = await withDatabase((store, db) => store.listUsers(db, new Date()));
      if (opts.json) return printJson(users);
      if (!users.length) return out('no users yet: trainyard admin user add NAME --admin');
      out(
        table(users, [
          { header: 'NAME', get: (u) => u.name },
          { header: 'ADMIN', get: (u) => (u.admin ? 'yes' : 'no') },
          { header: 'TOKENS', get: (u) => String(u.tokens), align: 'right' },
          { header: 'CREATED', get: (u) => time(u.createdAt) },
        ]),
      );
    });

  const token = admin.command('token').description('create, list and revoke tokens');
  token
    .command('create')
    .description('a new token for a user, printed once on stdout (only its hash is kept)')
    .usage('--user <name> [--expires <duration>] [--json]')
    .option('--expires <duration>', 'lifetime: a number and a unit, e.g. 90m, 12h, 30d, 2w (default: no expiry)')
    .option('--json', 'print { token, id, user, expiresAt } as JSON')
    .addHelpText('after', '\n  --user <name>  whose token it is (required)')
    .action(async (opts: Json & { expires?: string }, cmd: Command) => {
      const userName = userFlag(cmd);
      if (!userName) throw new UsageError('--user <name> is required: whose token it is (trainyard admin token create --user NAME)');
      const made = await withDatabase(async (store, db) => {
        const expiresAt = opts.expires === undefined ? null : new Date(Date.now() + store.parseLifetime(opts.expires)).toISOString();
        return store.createToken(db, { userName, expiresAt });
      });
      if (opts.json) return printJson({ token: made.token, id: made.info.id, user: made.info.userName, expiresAt: made.info.expiresAt });
      // The token alone on stdout (TOKEN=$(trainyard admin token create …)); the rest on stderr.
      out(made.token);
      err(
        `token ${made.info.id} for ${made.info.userName}, ${made.info.expiresAt ? `expires ${time(made.info.expiresAt)}` : 'no expiry'}. ` +
          'It is shown this once (only its hash is stored): pass it with --token or TRAINYARD_TOKEN, or paste it into the panel.',
      );
    });
  token
    .command('list')
    .description('tokens (id, prefix, state), newest first; never the tokens themselves')
    .usage('[--user <name>] [--json]')
    .option('--json', 'print the tokens as JSON')
    .addHelpText('after', "\n  --user <name>  only this user's")
    .action(async (opts: Json, cmd: Command) => {
      const userName = userFlag(cmd);
      const tokens = await withDatabase((store, db) => store.listTokens(db, userName));
      if (opts.json) return printJson(tokens);
      if (!tokens.length) return out(userName ? `${userName} has no tokens` : 'no tokens');
      const now = new Date();
      out(
        table(tokens, [
          { header: 'ID', get: (t) => t.id },
          { header: 'USER', get: (t) => t.userName },
          { header: 'PREFIX', get: (t) => `${t.prefix}…` },
          { header: 'STATE', get: (t) => tokenState(t, now) },
          { header: 'CREATED', get: (t) => time(t.createdAt) },
          { header: 'EXPIRES', get: (t) => (t.expiresAt ? time(t.expiresAt) : 'never') },
          { header: 'REVOKED', get: (t) => time(t.revokedAt) },
        ]),
      );
    });
  token
    .command('revoke')
    .description('revoke a token: refused from the next request on')
    .argument('<id-or-prefix>', 'its id (tok_…), its prefix as listed (ty_ and 4 to 7 characters), or the token itself')
    .option('--json', 'print the revoked token as JSON')
    .action(async (which: string, opts: Json) => {
      const r = await withDatabase((store, db) => store.revokeToken(db, which, new Date()));
      if (opts.json) return printJson({ ...r.info, alreadyRevoked: r.already });
      out(
        r.already
          ? `token ${r.info.id} (${r.info.userName}'s) was revoked already, at ${time(r.info.revokedAt)}`
          : `revoked token ${r.info.id} (${r.info.userName}'s, ${r.info.prefix}…)`,
      );
    });
}
