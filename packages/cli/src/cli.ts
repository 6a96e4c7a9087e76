// The `trainyard` program: flags (commander), the verbs, and the mapping of errors to exit codes.
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { Command, CommanderError, Option } from 'commander';
import { connect, DEFAULT_URL, type TrainyardClient } from '@trainyard/client';
import { describeError, EXIT, EXIT_CODES_HELP, type ExitCode } from './errors';
import { err } from './io';
import { checkUser, normalizeUrl } from './parse';
import { registerTaskCommands } from './commands/tasks';
import { registerInfoCommands } from './commands/info';
import { registerEventCommands } from './commands/events';
import { registerAdminCommands } from './commands/admin';
import { registerWhoamiCommand } from './commands/whoami';
import { registerQuotaCommands } from './commands/quota';
import { registerWebhookCommands } from './commands/webhooks';

/** What every verb gets: the connection (made on first use) and a way to set the exit code. */
export interface Ctx {
  readonly url: string;
  /** Who is acting (x-trainyard-user), when known; in tokens mode the token says it. */
  readonly user: string | undefined;
  /** The bearer token (--token, TRAINYARD_TOKEN), for a service in tokens mode. */
  readonly token: string | undefined;
  client(): Promise<TrainyardClient>;
  exit(code: ExitCode): void;
}

const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

function defaultUser(): string | undefined {
  const env = process.env.TRAINYARD_USER;
  if (env) return env;
  try {
    const name = userInfo().username;
    return /^[A-Za-z0-9._@-]{1,100}$/.test(name) ? name : undefined;
  } catch {
    return undefined;
  }
}

const HELP_AFTER = `
Environment:
  TRAINYARD_URL   the service's URL (default ${DEFAULT_URL}); --url overrides it
  TRAINYARD_USER  who you are in the audit log in local mode (default: your login name); --user overrides it
  TRAINYARD_TOKEN your token, for a service in tokens mode; --token overrides it

${EXIT_CODES_HELP}

Examples:
  trainyard submit --model Qwen/Qwen2.5-Coder-0.5B-Instruct --dataset examples/tiny-dataset.jsonl --preset balanced --follow
  trainyard ls --status QUEUED --status TRAINING
  trainyard logs -f <id>
  trainyard events --task <id> --jsonl | jq .type
  trainyard <verb> --help     the flags of one verb`;

export function buildProgram(state: { ctx: Ctx | null; exitCode: ExitCode; url: string }): Command {
  const program = new Command('trainyard')
    .description('Submit, watch and manage fine-tuning tasks on a Trainyard service.')
    .version(VERSION, '-V, --version')
    .addOption(new Option('--url <url>', 'URL of the Trainyard service').env('TRAINYARD_URL').default(DEFAULT_URL))
    .addOption(new Option('--user <name>', 'who is acting (recorded in the audit log)').env('TRAINYARD_USER'))
    .addOption(new Option('--token <token>', 'your token, for a service in tokens mode (see `trainyard whoami`)').env('TRAINYARD_TOKEN'))
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .showHelpAfterError('(add --help to see the flags)')
    .exitOverride()
    .addHelpText('after', HELP_AFTER);

  program.hook('preAction', (_program, action) => {
    const opts = action.optsWithGlobals<{ url: string; user?: string; token?: string }>();
    const url = normalizeUrl(opts.url);
    state.url = url;
    const user = opts.user !== undefined ? checkUser(opts.user) : defaultUser();
    const token = opts.token?.trim() || undefined;
    let client: Promise<TrainyardClient> | null = null;
    state.ctx = {
      url,
      user,
      token,
      client: () => (client ??= connect({ url, ...(user ? { user } : {}), ...(token ? { token } : {}) })),
      exit: (code) => {
        state.exitCode = code;
      },
    };
  });

  const ctx = (): Ctx => {
    if (!state.ctx) throw new Error('internal: no context before the action');
    return state.ctx;
  };
  registerTaskCommands(program, ctx);
  registerInfoCommands(program, ctx);
  registerEventCommands(program, ctx);
  registerWhoamiCommand(program, ctx);
  registerQuotaCommands(program, ctx);
  registerWebhookCommands(program, ctx);
  registerAdminCommands(program);
  return program;
}

/** Runs the CLI on `argv` (without node and the script); resolves with the exit code. */
export async function run(argv: string[]): Promise<number> {
  const state: { ctx: Ctx | null; exitCode: ExitCode; url: string } = {
    ctx: null,
    exitCode: EXIT.OK,
    url: process.env.TRAINYARD_URL || DEFAULT_URL,
  };
  const program = buildProgram(state);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return state.exitCode;
  } catch (e) {
    // commander has printed its message already (unknown flag, missing value, --help, ...).
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    const { exitCode, lines } = describeError(e, state.url);
    err(`error: ${lines.join('\n')}`);
    return exitCode;
  }
}
