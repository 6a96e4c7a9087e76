// `trainyard whoami`: who the service takes the caller for (users.me).
import type { Command } from 'commander';
import type { Ctx } from '../cli';
import { time } from '../format';
import { out, printJson } from '../io';

export function registerWhoamiCommand(program: Command, ctx: () => Ctx): void {
  program
    .command('whoami')
    .description('who the service takes you for: your user, whether an admin, the auth mode, your token')
    .option('--json', 'print { name, admin, auth, token } as JSON')
    .action(async (opts: { json?: boolean }) => {
      const c = ctx();
      const me = await (await c.client()).users.me.query();
      if (opts.json) return printJson(me);
      const role = me.admin ? 'admin' : 'user';
      if (me.auth === 'local') return out(`${me.name} (${role}) at ${c.url}: local mode, no token needed`);
      const token = me.token ? `token ${me.token.id}, ${me.token.expiresAt ? `expires ${time(me.token.expiresAt)}` : 'no expiry'}` : '';
      out(`${me.name} (${role}) at ${c.url}: tokens mode, ${token}`);
    });
}
