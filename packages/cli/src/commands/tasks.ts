// Task verbs: submit, ls, show, logs, cancel, delete.
import { createWriteStream, existsSync, openAsBlob, renameSync, rmSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Option, type Command } from 'commander';
import { DEFAULT_PRESET, describePresets, PRESET_NAMES } from '@trainyard/catalogue';
import {
  DownloadError,
  downloadOutputs,
  TASK_STATUSES,
  uploadDataset,
  type ProgressPoint,
  type TaskView,
  type TrainyardClient,
} from '@trainyard/client';
import type { Ctx } from '../cli';
import { CliError, EXIT, UsageError, type ExitCode } from '../errors';
import { forTerminal, stripControls } from '../terminal-text';
import {
  devicesText,
  etaText,
  expectedStarts,
  gpuHoursOf,
  isTerminal,
  outcomeText,
  progressText,
  queuePositions,
  ranText,
  reasonText,
  sizeText,
  requestText,
  table,
  taskDetails,
  time,
  whereText,
  type QueueEntry,
} from '../format';
import { err, out, printJson, printJsonLine, terminalColumns } from '../io';
import { resolveTaskId } from '../resolve-id';
import { followTask, LiveStatus, pageLogs, streamLogs, type LogLineView } from '../live';
import { buildCreateInput, intArg, listArg, numberArg, parseDuration, type SubmitFlags } from '../parse';
import { submitSweep } from './sweep';

type Json = { json?: boolean };

/** The exit code for how a followed task ended. */
function outcomeExit(t: TaskView): ExitCode {
  return t.status === 'COMPLETED' ? EXIT.OK : t.status === 'CANCELLED' ? EXIT.CANCELLED : EXIT.FAILED;
}

/** A queued task's position and why it waits (null when it is not queued, or no longer). */
async function queueEntryOf(client: TrainyardClient, t: TaskView): Promise<QueueEntry | null> {
  if (t.status !== 'QUEUED') return null;
  const q = await client.queue.get.query();
  return q.queued.find((e) => e.task.id === t.id) ?? null;
}

function statusLines(t: TaskView, queued: QueueEntry | null): string[] {
  if (t.status === 'QUEUED')
    return [
      `status: QUEUED${queued ? ` (queue position ${queued.position})` : ''}`,
      ...(queued ? [`waits: ${reasonText(queued.reason)}`] : []),
    ];
  if (t.devices.length && !isTerminal(t.status)) return [`status: ${t.status} on ${devicesText(t.devices)}`];
  return [`status: ${t.status}`];
}

/** Stop following on Ctrl-C, say that the task goes on. */
function onInterrupt(id: string, live: LiveStatus | null): () => void {
  const handler = () => {
    live?.stop();
    err(
      `\nstopped following task ${id}; it goes on. Follow it again with \`trainyard logs -f ${id}\`, stop it with \`trainyard cancel ${id}\``,
    );
    process.exit(130);
  };
  process.once('SIGINT', handler);
  return () => process.off('SIGINT', handler);
}

function liveStatus(forceLines: boolean): LiveStatus {
  return new LiveStatus({
    stream: process.stderr,
    bar: process.stderr.isTTY === true,
    lines: forceLines,
    stdoutIsTTY: process.stdout.isTTY === true,
  });
}

/**
 * A dataset file on this machine is uploaded, and the path the service stored it at is what the
 * task gets: the service only reads datasets inside its datasets folders, and may run elsewhere.
 * Anything else (a folder, a path that is not here) is the service's to resolve.
 */
async function uploadIfLocalFile(path: string, ctx: Ctx, say: boolean): Promise<string> {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st?.isFile()) return path;
  const stored = await uploadDataset(await openAsBlob(path), basename(path), {
    url: ctx.url,
    ...(ctx.user ? { user: ctx.user } : {}),
    ...(ctx.token ? { token: ctx.token } : {}),
  });
  if (say) err(`uploaded ${path} as ${stored.file_path}`);
  return stored.file_path;
}

export function registerTaskCommands(program: Command, ctx: () => Ctx): void {
  program
    .command('submit')
    .description('submit a fine-tuning task; prints its id, status, queue position and warnings')
    .requiredOption('--model <model>', 'base model id (e.g. Qwen/Qwen2.5-Coder-1.5B-Instruct)')
    .requiredOption(
      '--dataset <path>',
      "dataset: a local .json/.jsonl file is uploaded to the service; a folder, or with --no-upload any path, must be inside the service's datasets folders",
    )
    .option('--no-upload', "submit --dataset as a path on the service's machine instead of uploading a local file")
    .option('--name <name>', 'a name for the task (default: "<model> on <dataset> · <end of its id>")')
    .option(
      '--output-dir <dir>',
      "a folder for the adapter inside the task's own output folder (<outputs>/<task id>/<dir>; default: that folder itself)",
    )
    .addOption(
      new Option(
        '--preset <preset>',
        `batch/accumulation/max length and 8-bit loading (default: ${DEFAULT_PRESET}): ${describePresets()}`,
      ).choices(PRESET_NAMES),
    )
    .option('--epochs <n>', 'epochs (default 3)', intArg)
    .option('--batch-size <n>', 'batch size (overrides the preset)', intArg)
    .option('--grad-accum <n>', 'gradient accumulation steps (overrides the preset)', intArg)
    .option('--lr <x>', 'learning rate (default 2e-4)', numberArg)
    .option('--max-length <n>', 'max sequence length in tokens (overrides the preset)', intArg)
    .option('--8bit', 'load the model in 8-bit')
    .option('--no-8bit', 'do not load the model in 8-bit (overrides the preset)')
    .option('--4bit', 'load the model in 4-bit')
    .option('--lora-rank <n>', 'LoRA rank (default 8)', intArg)
    .option('--lora-alpha <n>', 'LoRA alpha (default 16)', intArg)
    .option('--timeout <duration>', "stop the task after this long, e.g. 6h, 30m, 90s (default: the service's, 6h)", parseDuration)
    .option('--gpus <n>', 'GPUs the task runs on at once (a gang: all start together or none; default 1)', intArg)
    .option(
      '--gpu-memory <gb>',
      'GPU memory the task needs on each device, in GB: it is placed on a device with that much (default: a whole device; with --shared, the estimate)',
      numberArg,
    )
    .option(
      '--shared',
      'may share a device with other shared tasks while their memory fits (needs --gpu-memory or a model whose size is known)',
    )
    .option('--priority <class>', "priority class: low, normal (default), high, urgent, or the service's own (TRAINYARD_PRIORITY_CLASSES)")
    .option('--idempotency-key <key>', 'submitting again with the same key returns the first task instead of a new one')
    .option('--simulate <json>', 'knobs of the simulated trainer, e.g. \'{"steps":3,"stepMs":30,"failAtStep":2}\'')
    .option(
      '--sweep <grid>',
      "a grid of settings, each combination one task, all submitted in one call (all or none), e.g. 'learningRate=1e-4,2e-4 loraRank=8,16'; prints a table of the tasks",
    )
    .option('-f, --follow', 'show live progress until the task ends; exit 0 COMPLETED, 1 FAILED, 3 CANCELLED')
    .option('-q, --quiet', 'print only the task id')
    .option('--json', 'print the task as JSON (with --follow: the task as it ended)')
    .action(async (opts: SubmitFlags & Json & { follow?: boolean; quiet?: boolean; upload: boolean; sweep?: string }) => {
      if (opts.sweep !== undefined && opts.follow) throw new UsageError('--follow follows one task: leave it out with --sweep');
      const input = buildCreateInput(opts);
      if (opts.upload) input.datasetPath = await uploadIfLocalFile(input.datasetPath, ctx(), !opts.quiet && !opts.json);
      if (opts.sweep !== undefined) return submitSweep(input, opts.sweep, opts, ctx());
      const client = await ctx().client();
      const created = await client.tasks.create.mutate(input);
      const { warnings, created: isNew, ...task } = created;
      const queued = await queueEntryOf(client, task);
      if (!opts.json) {
        if (opts.quiet) out(task.id);
        else {
          out(
            isNew
              ? `submitted task ${task.id} (${task.spec.name})`
              : `task ${task.id} already exists for idempotency key "${task.spec.idempotencyKey}": nothing new was submitted`,
          );
          out(`request: ${requestText(task.spec.resources)}`);
          for (const l of statusLines(task, queued)) out(l);
        }
        for (const w of warnings) err(`warning [${w.level}] ${w.code}: ${w.message}`);
      }
      if (!opts.follow) {
        if (opts.json) printJson({ ...created, queuePosition: queued?.position ?? null });
        else if (!opts.quiet && !isTerminal(task.status)) out(`follow it with \`trainyard logs -f ${task.id}\``);
        return;
      }
      const live = liveStatus(!opts.quiet);
      const release = onInterrupt(task.id, live);
      live.update(task);
      const final = await followTask(client, task.id, {
        onTask: (t) => live.update(t),
        onConnectionProblem: (m) => live.note(m),
      }).finally(() => {
        live.stop();
        release();
      });
      if (opts.json) printJson({ ...final, warnings, created: isNew });
      else if (!opts.quiet) out(outcomeText(final));
      ctx().exit(outcomeExit(final));
    });

  program
    .command('ls')
    .description('list tasks, newest first')
    .option(
      '--status <status...>',
      'only tasks in these statuses (repeat or comma-separate): PENDING QUEUED PREPARING TRAINING COMPLETED FAILED CANCELLED',
      listArg,
    )
    .option('--search <text>', 'only tasks whose name, model or id holds this text (any case)')
    .option('--owner <user>', "only this user's tasks")
    .option('--limit <n>', 'tasks per page (1-200)', intArg, 50)
    .option('--cursor <cursor>', 'start after this cursor (the nextCursor of a previous page)')
    .option('--all', 'follow the cursors to list every matching task')
    .option('--json', 'print { items, nextCursor } as JSON')
    .action(async (opts: Json & { status?: string[]; search?: string; owner?: string; limit: number; cursor?: string; all?: boolean }) => {
      if (opts.status) checkStatuses(opts.status);
      const client = await ctx().client();
      const items: TaskView[] = [];
      let cursor: string | null = opts.cursor ?? null;
      for (;;) {
        const page = await client.tasks.list.query({
          ...(opts.status ? { status: opts.status.map((s) => s.toUpperCase()) as never } : {}),
          ...(opts.search !== undefined ? { search: opts.search } : {}),
          ...(opts.owner !== undefined ? { owner: opts.owner } : {}),
          limit: opts.limit,
          cursor,
        });
        items.push(...page.items);
        cursor = page.nextCursor;
        if (!opts.all || !cursor) break;
      }
      if (opts.json) return printJson({ items, nextCursor: cursor });
      if (!items.length) {
        const filters = [
          opts.status ? `status ${opts.status.join(', ').toUpperCase()}` : null,
          opts.search !== undefined ? `"${opts.search}" in their name, model or id` : null,
          opts.owner !== undefined ? `owner ${opts.owner}` : null,
        ].filter(Boolean);
        out(filters.length ? `no tasks with ${filters.join(', ')}` : 'no tasks yet: submit one with `trainyard submit`');
        return;
      }
      const queue = items.some((t) => t.status === 'QUEUED') ? await client.queue.get.query() : null;
      const positions = queue ? queuePositions(queue) : new Map<string, number>();
      const starts = queue ? expectedStarts(queue) : new Map<string, string | null>();
      const now = Date.now();
      out(
        table(
          items,
          [
            { header: 'ID', get: (t) => t.id },
            { header: 'NAME', get: (t) => t.spec.name, max: 40, min: 10 },
            { header: 'STATUS', get: (t) => t.status + (t.stop && !isTerminal(t.status) ? ' (stopping)' : '') },
            { header: 'PROGRESS', get: (t) => progressText(t.progress), min: 4 },
            { header: 'QUEUE/DEVICES', get: (t) => whereText(t, positions), drop: 4 },
            { header: 'REQUEST', get: (t) => requestText(t.spec.resources), drop: 7 },
            { header: 'CREATED', get: (t) => time(t.createdAt), drop: 8 },
            { header: 'FINISHED', get: (t) => time(t.finishedAt), drop: 6 },
            { header: 'RAN', get: (t) => ranText(t, now), drop: 3 },
            { header: 'GPU-H', get: (t) => gpuHoursOf(t, now), align: 'right', drop: 5 },
            { header: 'ETA', get: (t) => etaText(t, starts.get(t.id), now), drop: 2 },
          ],
          terminalColumns(),
        ),
      );
      if (cursor) err(`more tasks: add --all, or --cursor ${cursor} for the next page`);
    });

  program
    .command('show')
    .description("a task's details: spec, progress, times, error, artifacts")
    .argument('<id>', 'task id, or a start of one that no other task id has')
    .option('--json', 'print the task as JSON')
    .action(async (id: string, opts: Json) => {
      const client = await ctx().client();
      id = await resolveTaskId(client, id);
      const task = await client.tasks.get.query({ id });
      if (opts.json) return printJson(task);
      const [queued, metrics, outputs] = await Promise.all([
        queueEntryOf(client, task),
        allMetrics(client, id),
        task.startedAt ? client.tasks.outputs.query({ id }) : null,
      ]);
      // The error message quotes the trainer's last output lines, artifacts are its paths.
      out(terminalLines(taskDetails(task, queued, { ...metrics, width: sparklineWidth(), outputs })));
    });

  program
    .command('logs')
    .description("a task's output; with -f, follow it live until the task ends")
    .argument('<id>', 'task id, or a start of one that no other task id has')
    .option(
      '-f, --follow',
      'keep printing new lines until the task ends (progress on stderr when it is a terminal); exit 0 COMPLETED, 1 FAILED, 3 CANCELLED',
    )
    .option('--json', 'print { id, lines } as JSON; with -f, one line object per line (JSON Lines)')
    .action(async (id: string, opts: Json & { follow?: boolean }) => {
      const client = await ctx().client();
      id = await resolveTaskId(client, id);
      const task = await client.tasks.get.query({ id });
      if (!opts.follow) {
        const lines: LogLineView[] = [];
        await pageLogs(client, id, 0, (l) => (opts.json ? lines.push(l) : out(forTerminal(l.line, stdoutIsTTY()))));
        if (opts.json) printJson({ id, lines });
        return;
      }
      // A bar only on a terminal; no status lines otherwise (stdout carries the log).
      const live = liveStatus(false);
      const print = (l: LogLineView) => (opts.json ? printJsonLine(l) : live.println(forTerminal(l.line, stdoutIsTTY())));
      const seq = await pageLogs(client, id, 0, print);
      if (isTerminal(task.status)) return ctx().exit(outcomeExit(task));
      const release = onInterrupt(id, live);
      let streamError: unknown = null;
      let stream: ReturnType<typeof streamLogs> | null = null;
      try {
        const ended = followTask(client, id, { onTask: (t) => live.update(t), onConnectionProblem: (m) => live.note(m) });
        stream = streamLogs(client, id, seq, print, (e) => (streamError = e));
        const final = await ended;
        stream.stop();
        // Lines stored before the task's end that the stream had not delivered yet.
        await pageLogs(client, id, stream.seq(), print);
        if (streamError) throw streamError;
        live.stop();
        ctx().exit(outcomeExit(final));
      } finally {
        stream?.stop();
        live.stop();
        release();
      }
    });

  program
    .command('download')
    .description("a completed task's output folder (the adapter) as a .tar.gz, streamed as the service packs it")
    .argument('<id>', 'task id, or a start of one that no other task id has')
    .option('-o, --output <file>', 'where to write it ("-": standard output; default: <id>_finetuned_model.tar.gz here)')
    .option('--force', 'replace the file if it exists')
    .action(async (id: string, opts: { output?: string; force?: boolean }) => {
      const c = ctx();
      id = await resolveTaskId(await c.client(), id);
      const got = await downloadOutputs(id, {
        url: c.url,
        ...(c.user ? { user: c.user } : {}),
        ...(c.token ? { token: c.token } : {}),
      }).catch((e: unknown) => {
        throw downloadFailure(e, id, c.url);
      });
      const body = Readable.fromWeb(got.body as Parameters<typeof Readable.fromWeb>[0]);
      if (opts.output === '-') {
        await pipeline(body, process.stdout);
        return;
      }
      const file = opts.output ?? got.filename;
      if (existsSync(file) && !opts.force) {
        await got.body.cancel().catch(() => {});
        throw new CliError(`${file} exists: add --force to replace it, or -o another file`, EXIT.USAGE);
      }
      // Written beside it first: an interrupted download never leaves a file that looks whole.
      const part = `${file}.part`;
      let bytes = 0;
      const count = new Transform({
        transform(chunk: Buffer, _enc, done) {
          bytes += chunk.length;
          done(null, chunk);
        },
      });
      try {
        await pipeline(body, count, createWriteStream(part, { mode: 0o644 }));
        renameSync(part, file);
      } catch (e) {
        rmSync(part, { force: true });
        throw new CliError(`the download of task ${id} broke off after ${bytes} bytes: ${(e as Error).message}`);
      }
      out(`saved ${file} (${sizeText(bytes)}): the outputs of task ${id}; unpack with \`tar -xzf ${file}\``);
    });

  program
    .command('cancel')
    .description('cancel a task: a queued one at once, a running one is asked to stop')
    .argument('<id>', 'task id, or a start of one that no other task id has')
    .option('--reason <reason>', 'why (recorded in the audit log)')
    .option('--json', 'print the task as JSON')
    .action(async (id: string, opts: Json & { reason?: string }) => {
      const client = await ctx().client();
      id = await resolveTaskId(client, id);
      const task = await client.tasks.cancel.mutate({ id, ...(opts.reason !== undefined ? { reason: opts.reason } : {}) });
      if (opts.json) return printJson(task);
      if (task.status === 'CANCELLED') out(`cancelled task ${id}`);
      else
        out(
          `stopping task ${id} (${task.status}): its trainer was asked to stop and the task ends as CANCELLED shortly; ` +
            `watch it with \`trainyard logs -f ${id}\``,
        );
    });

  program
    .command('delete')
    .description('delete a finished task (its events stay in the audit log)')
    .argument('<id>', 'task id, or a start of one that no other task id has')
    .option('--json', 'print { id, deleted } as JSON')
    .action(async (id: string, opts: Json) => {
      const client = await ctx().client();
      id = await resolveTaskId(client, id);
      const result = await client.tasks.delete.mutate({ id });
      if (opts.json) return printJson(result);
      out(`deleted task ${id} (its history stays: \`trainyard events --task ${id}\`)`);
    });
}

const stdoutIsTTY = () => process.stdout.isTTY === true;

/** --status values the service knows (any case); refuses others, naming the statuses there are. */
function checkStatuses(given: readonly string[]): void {
  const known = TASK_STATUSES as readonly string[];
  const bad = given.filter((s) => !known.includes(s.toUpperCase()));
  if (!bad.length) return;
  const running = bad.some((s) => s.toUpperCase() === 'RUNNING') ? ' (a running task is PREPARING or TRAINING)' : '';
  throw new UsageError(
    `--status: ${bad.join(', ')} ${bad.length === 1 ? 'is not a status' : 'are not statuses'}${running}; the statuses are ${known.join(', ')}`,
  );
}

/** A refused or failed download as the CLI reports it, with the exit code scripts rely on. */
function downloadFailure(e: unknown, id: string, url: string): CliError {
  if (!(e instanceof DownloadError)) return new CliError((e as Error).message);
  if (e.status === null) return new CliError(`cannot reach Trainyard at ${url}: is it running? (${e.message})`, EXIT.UNREACHABLE);
  if (e.status === 401) return new CliError(e.message, EXIT.UNAUTHORIZED);
  if (e.status === 404) return new CliError(`task ${id}: ${e.message}`, EXIT.NOT_FOUND);
  if (e.status === 400) return new CliError(`task ${id}: ${e.message}; only a COMPLETED task's outputs can be downloaded`, EXIT.CONFLICT);
  return new CliError(`the service refused the download of task ${id} (HTTP ${e.status}): ${e.message}`);
}

/** A task's whole progress series and peak memory (tasks.metrics, every page). */
async function allMetrics(client: TrainyardClient, id: string) {
  const points: ProgressPoint[] = [];
  let after: string | null = null;
  let peakMemoryGb: number | null = null;
  for (;;) {
    const page: Awaited<ReturnType<TrainyardClient['tasks']['metrics']['query']>> = await client.tasks.metrics.query({
      id,
      after,
      limit: 5000,
    });
    points.push(...page.points);
    peakMemoryGb = page.peakMemoryGb;
    if (!page.nextCursor) break;
    after = page.nextCursor;
  }
  return { points, peakMemoryGb };
}

/** Columns the loss sparkline may take: the terminal's width less its label and numbers, 40 when not a terminal. */
function sparklineWidth(): number {
  return Math.max(8, Math.min(60, (terminalColumns() ?? 80) - 40));
}

/** Formatted text with trainer-originated parts in it: each line stripped of control sequences on a terminal. */
function terminalLines(text: string): string {
  return stdoutIsTTY() ? text.split('\n').map(stripControls).join('\n') : text;
}
