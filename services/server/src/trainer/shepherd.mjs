#!/usr/bin/env node
// @ts-check
// Trainer shepherd: `node shepherd.mjs <runDir>`, or `node shepherd.mjs --standby`.
//
// Started detached (own session, unref'ed) by launch.ts so that it outlives the service. It runs
// the trainer described by <runDir>/launch.json as the leader of its own process group and
// records everything in files of <runDir>:
//   trainer.json  {pid, startTime}                      written atomically right after spawn
//   output.jsonl  {"seq","stream","line","t"} per line   appended synchronously, in order
//   exit.json     {code, signal, endedAt[, error]}       written atomically, last of all
// Plain JavaScript (no tsx) so it starts fast. Its pure parts are the sibling .mjs modules it
// shares with the service: run-files (names, modes, atomic writes), proc-stat (start time),
// line-splitter, output-limits (rate and totals), defaults, protocol-parse.
//
// Standby mode: Node's own start-up (~60 ms) used to sit between one trainer's exit and the next
// one's start. The runner therefore keeps one shepherd started ahead of need, with `--standby`
// and stdin a pipe from the service. It waits for one line on stdin, the run folder, and from
// then on is an ordinary shepherd of that folder (cwd changed to it, stdin closed). The runner
// writes <runDir>/shepherd.json {pid, startTime} naming this process BEFORE launch.json and the
// line, so that recovery knows the folder has a live shepherd although our argv does not name it.
// EOF (or an error) on stdin before a complete line means the service exited or crashed before
// handing us a run: we exit at once and touch nothing, so a standby never outlives its service
// and a folder whose line was never sent is launched again by recovery.
import { spawn } from 'node:child_process';
import { closeSync, fsyncSync, readFileSync, renameSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { safeText } from '@trainyard/domain/safe-text';
import { DEFAULT_LOG_LINE_BYTES, DEFAULT_LOG_LINES_PER_SECOND } from './defaults.mjs';
import { createLineSplitter } from './line-splitter.mjs';
import { createOutputLimiter } from './output-limits.mjs';
import { readProcessStartTime } from './proc-stat.mjs';
import {
  jsonFileText,
  openPrivate,
  PRIVATE_FILE_MODE,
  RUN_FILES,
  STANDBY_FLAG,
  tempPathFor,
  writeAll,
  writeJsonAtomicSync,
} from './run-files.mjs';

/** @typedef {import('./run-files.d.mts').LaunchFile} LaunchFile */

/** After the trainer exits, how long to wait for its stdio to close (a grandchild may hold it). */
const STDIO_GRACE_MS = 3000;

/** Longest run folder line a standby accepts (a path; the service writes it in one write). */
const MAX_RUN_DIR_LINE_BYTES = 16 * 1024;

/** The run folder this shepherd works in: from argv, or for a standby from its stdin line. */
let runDir = process.argv[2] ?? '';
if (!runDir) {
  process.stderr.write('usage: shepherd.mjs <runDir> | shepherd.mjs --standby\n');
  process.exit(2);
}

/** @param {string} message */
function shepherdLog(message) {
  try {
    appendFileSync(join(runDir, RUN_FILES.shepherdLog), `${new Date().toISOString()} ${message}\n`, { mode: PRIVATE_FILE_MODE });
  } catch {
    // nowhere left to report to
  }
}

/** @type {number | null} */
let outFd = null;
let seq = 0;
let exitWritten = false;
/** @type {number | undefined} */
let childPid;

/**
 * @param {unknown} value
 */
function writeExit(value) {
  if (exitWritten) return;
  exitWritten = true;
  writeJsonAtomicSync(join(runDir, RUN_FILES.exit), value);
}

function main() {
  /** @type {LaunchFile} */
  let launch;
  try {
    launch = JSON.parse(readFileSync(join(runDir, RUN_FILES.launch), 'utf8'));
    if (!Array.isArray(launch.argv) || launch.argv.length === 0) throw new Error('argv is empty');
  } catch (err) {
    writeExit({
      code: null,
      signal: null,
      error: `spawn failed: bad launch.json: ${errMessage(err)}`,
      endedAt: Date.now(),
    });
    process.exit(0);
  }
  const maxLineBytes = positiveInt(launch.maxLineBytes, DEFAULT_LOG_LINE_BYTES);
  const maxLinesPerSecond = positiveInt(launch.maxLinesPerSecond, DEFAULT_LOG_LINES_PER_SECOND);
  // Absent: no limit (the service's configuration is the one home of their defaults).
  const maxProtocolLinesPerSecond = positiveInt(launch.maxProtocolLinesPerSecond, Infinity);
  const maxProtocolLinesPerTask = positiveInt(launch.maxProtocolLinesPerTask, Infinity);
  const maxBytesPerTask = positiveInt(launch.maxBytesPerTask, Infinity);

  outFd = openPrivate(join(runDir, RUN_FILES.output), 'a');

  // ---- limits (output-limits.mjs) ----
  /** @type {NodeJS.Timeout | null} */
  let windowTimer = null;
  const limiter = createOutputLimiter(
    { maxLinesPerSecond, maxProtocolLinesPerSecond, maxProtocolLinesPerTask, maxBytesPerTask },
    {
      arm(delayMs) {
        windowTimer = setTimeout(() => {
          windowTimer = null;
          const now = Date.now();
          flush(records(limiter.roll(now), now));
        }, delayMs);
      },
      disarm() {
        if (windowTimer) clearTimeout(windowTimer);
        windowTimer = null;
      },
    },
  );

  /**
   * output.jsonl records of `entries`, numbered in order.
   * @param {import('./output-limits.d.mts').OutputEntry[]} entries
   * @param {number} t
   */
  function records(entries, t) {
    return entries.map(({ stream, line }) => {
      seq += 1;
      return `${JSON.stringify({ seq, stream, line, t })}\n`;
    });
  }

  /** @param {string[]} recs */
  function flush(recs) {
    if (recs.length === 0 || outFd === null) return;
    writeAll(outFd, Buffer.from(recs.join('')));
  }

  /**
   * @param {'stdout' | 'stderr'} stream
   * @param {string[]} lines
   * @param {number} now
   * @returns {string[]}
   */
  function acceptLines(stream, lines, now) {
    /** @type {string[]} */
    const out = [];
    // Postgres refuses NUL (and jsonb lone surrogates): such a line once failed its whole batch
    // and, as a trainer's last line, kept its task from ever ending.
    for (const line of lines) out.push(...records(limiter.accept(stream, safeText(line), now), now));
    return out;
  }

  // ---- spawn ----
  let child;
  try {
    const [command, ...args] = launch.argv;
    child = spawn(/** @type {string} */ (command), args, {
      cwd: launch.cwd || undefined,
      env: launch.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
  } catch (err) {
    writeExit({ code: null, signal: null, error: `spawn failed: ${errMessage(err)}`, endedAt: Date.now() });
    process.exit(0);
  }

  if (child.pid === undefined) {
    // ENOENT, EACCES, bad cwd...: reported on the 'error' event.
    child.once('error', (err) => {
      writeExit({ code: null, signal: null, error: `spawn failed: ${errMessage(err)}`, endedAt: Date.now() });
      process.exit(0);
    });
    return;
  }

  childPid = child.pid;
  // Same tick as spawn: libuv cannot have reaped the child yet, so /proc/<pid> exists
  // (possibly as a zombie) even if the trainer died instantly.
  writeJsonAtomicSync(join(runDir, RUN_FILES.trainer), {
    pid: child.pid,
    startTime: readProcessStartTime(child.pid),
  });

  child.on('error', (err) => shepherdLog(`child error: ${errMessage(err)}`));

  const splitters = { stdout: createLineSplitter(maxLineBytes), stderr: createLineSplitter(maxLineBytes) };
  /** @param {'stdout' | 'stderr'} stream */
  const onData = (stream) => (/** @type {Buffer} */ chunk) => {
    flush(acceptLines(stream, splitters[stream].push(chunk), Date.now()));
  };
  /** @type {Record<'stdout' | 'stderr', boolean>} */
  const ended = { stdout: false, stderr: false };
  /** @param {'stdout' | 'stderr'} stream */
  const onEnd = (stream) => () => {
    if (ended[stream]) return;
    ended[stream] = true;
    const last = splitters[stream].end();
    if (last !== null) flush(acceptLines(stream, [last], Date.now()));
  };
  for (const stream of /** @type {const} */ (['stdout', 'stderr'])) {
    const s = child[stream];
    if (!s) continue;
    s.on('data', onData(stream));
    s.on('end', onEnd(stream));
    s.on('error', (err) => shepherdLog(`${stream} error: ${errMessage(err)}`));
  }

  /** @type {{ code: number | null, signal: string | null } | null} */
  let exitStatus = null;
  let finished = false;

  function finish() {
    if (finished || !exitStatus) return;
    finished = true;
    const now = Date.now();
    onEnd('stdout')();
    onEnd('stderr')();
    flush(records([...limiter.roll(now), ...limiter.totals()], now));
    // Visible first, durable right after: exit.json is renamed into place before the fsyncs, so
    // the service (which reads the page cache, where every output line already is) learns of the
    // exit two fsyncs sooner, and the next task starts that much sooner. Both files reach the
    // disk before this process ends; only a power loss within those milliseconds could lose
    // them, and the task is then failed as lost, which is what a power loss does to it anyway.
    exitWritten = true;
    const exitFile = join(runDir, RUN_FILES.exit);
    const tmp = tempPathFor(exitFile);
    const exitFd = openPrivate(tmp, 'w');
    writeAll(exitFd, Buffer.from(jsonFileText({ code: exitStatus.code, signal: exitStatus.signal, endedAt: now })));
    renameSync(tmp, exitFile);
    for (const fd of [outFd, exitFd]) {
      if (fd === null) continue;
      try {
        fsyncSync(fd);
      } catch {
        // best effort
      }
      closeSync(fd);
    }
    outFd = null;
    process.exit(0);
  }

  child.on('exit', (code, signal) => {
    exitStatus = { code, signal };
    // Normally 'close' follows at once; a grandchild holding the pipes must not keep us.
    setTimeout(() => {
      child.stdout?.destroy();
      child.stderr?.destroy();
      finish();
    }, STDIO_GRACE_MS);
  });
  child.on('close', (code, signal) => {
    if (!exitStatus) exitStatus = { code, signal };
    finish();
  });
}

/** @param {unknown} v @param {number} dflt */
function positiveInt(v, dflt) {
  return typeof v === 'number' && Number.isFinite(v) && v >= 1 ? Math.floor(v) : dflt;
}

/** @param {unknown} err */
function errMessage(err) {
  return err instanceof Error ? err.message : String(err);
}

/** From here on this process is the shepherd of `runDir`, whatever happens to the service. */
function run() {
  // Outlive the service and our own parent: the trainer is signalled through its own group.
  for (const sig of /** @type {const} */ (['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGPIPE'])) {
    process.on(sig, () => {});
  }
  process.on('uncaughtException', (err) => {
    shepherdLog(`uncaught: ${err && err.stack ? err.stack : String(err)}`);
  });
  try {
    main();
  } catch (err) {
    fatal(err);
  }
}

/**
 * Standby: wait for the run folder on stdin. Until it comes, signals keep their default action
 * (a standby holds nothing, so killing it is harmless: the runner falls back to a fresh spawn).
 */
function awaitRunDir() {
  const stdin = process.stdin;
  /** @type {Buffer[]} */
  const parts = [];
  let size = 0;
  let adopted = false;
  const giveUp = () => {
    // The service is gone (or broke the pipe) before it handed us a run: nothing to do.
    if (!adopted) process.exit(0);
  };
  stdin.on('end', giveUp);
  stdin.on('close', giveUp);
  stdin.on('error', giveUp);
  stdin.on('data', (/** @type {Buffer} */ chunk) => {
    if (adopted) return;
    const nl = chunk.indexOf(0x0a);
    if (nl < 0) {
      parts.push(chunk);
      size += chunk.length;
      if (size > MAX_RUN_DIR_LINE_BYTES) process.exit(0);
      return;
    }
    parts.push(chunk.subarray(0, nl));
    adopted = true;
    runDir = Buffer.concat(parts).toString('utf8');
    // The rest of stdin means nothing to us: EOF, errors and further bytes are ignored.
    stdin.removeAllListeners('data');
    stdin.on('error', () => {});
    stdin.destroy();
    if (!runDir.startsWith('/')) process.exit(0);
    try {
      // Like a fresh shepherd (spawned with cwd = runDir), and how /proc tells whose we are.
      process.chdir(runDir);
    } catch {
      // main() reports a folder it cannot use (or there is nowhere to report to)
    }
    run();
  });
}

/** @param {unknown} err */
function fatal(err) {
  shepherdLog(`fatal: ${err instanceof Error ? err.stack : String(err)}`);
  // Nobody could supervise a trainer we failed to record: take it down with us.
  if (childPid !== undefined && !exitWritten) {
    try {
      process.kill(-childPid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  try {
    writeExit({ code: null, signal: null, error: `shepherd failed: ${errMessage(err)}`, endedAt: Date.now() });
  } catch {
    // ignore
  }
  process.exit(0);
}

if (runDir === STANDBY_FLAG) {
  runDir = '';
  awaitRunDir();
} else {
  run();
}
