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
//
// Warm standby (`--standby --warm`): the service first writes one line, the warm trainer's
// {argv, cwd, env} (warm.mjs: a launch's environment less the task's variables), and this
// shepherd starts that trainer at once in standby (TRAINYARD_STANDBY=1, stdin a pipe from us):
// it imports what it needs, touches no GPU and prints {"type":"ready"}. We tell the service
// `ready` (or `died`) on our stdout, which is closed once we are handed a run. Then comes the run
// folder line as above. If launch.json's trainer is the warm one's (same argv, cwd and
// environment but for the task's variables) and it is alive, it becomes the run's trainer:
// trainer.json names it, the assignment (those variables) is written on its stdin, and what it
// printed while waiting opens output.jsonl. Otherwise (another command, it died while waiting,
// it never became ready) it is stopped and a fresh trainer is spawned: a cold start, nothing
// worse. EOF on our stdin before a run folder: the warm trainer is stopped (SIGTERM to its
// group; it also sees EOF on its own stdin when we are gone) and we exit.
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
import { assignmentOf, isReadyLine, STANDBY_ENV, WARM_FLAG, warmMismatch } from './warm.mjs';

/** @typedef {import('./run-files.d.mts').LaunchFile} LaunchFile */

/** After the trainer exits, how long to wait for its stdio to close (a grandchild may hold it). */
const STDIO_GRACE_MS = 3000;

/** Longest line a standby accepts: the run folder (a path), or a warm standby's trainer spec. */
const MAX_STDIN_LINE_BYTES = 1024 * 1024;

/** How long a run handed to a warm standby waits for its trainer to become ready before a cold start. */
const WARM_READY_WAIT_MS = 20_000;

/** Lines a warm trainer may print while it waits (kept for its task's log); the rest are counted. */
const WARM_BUFFER_LINES = 500;

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

async function main() {
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

  // A warm trainer, when it fits, is taken (after waiting for it to be ready) before output.jsonl
  // exists: as for a fresh spawn, no output.jsonl means no trainer was started for this run.
  const adopted = await adoptWarm(launch);
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

  // ---- the trainer: the warm one if it fits, else a fresh spawn ----
  /** @type {import('node:child_process').ChildProcess} */
  let child;
  /** @type {OutputPump} */
  let pump;
  if (adopted) {
    child = adopted.child;
    pump = adopted.pump;
    childPid = child.pid;
    // The assignment first (the GPU waits for it), then trainer.json: the service waits for
    // trainer.json, recovery reads it, and the exit is only written after both.
    try {
      child.stdin?.end(`${JSON.stringify(assignmentOf(launch))}\n`);
    } catch (err) {
      shepherdLog(`assignment not written: ${errMessage(err)}`);
    }
    const assignedAt = performance.timeOrigin + performance.now();
    writeJsonAtomicSync(join(runDir, RUN_FILES.trainer), {
      pid: adopted.pid,
      startTime: adopted.startTime,
      warm: true,
      readyAt: adopted.readyAt,
      assignedAt,
    });
    // What it printed while it waited comes first in the task's output.
    for (const { stream, line } of adopted.waiting) flush(acceptLines(stream, [line], Date.now()));
    if (adopted.droppedWhileWaiting)
      flush(
        acceptLines('stderr', [`[trainyard] ${adopted.droppedWhileWaiting} lines the trainer printed in standby were dropped`], Date.now()),
      );
  } else {
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
    pump = pumpOutput(child, maxLineBytes);
  }

  child.on('error', (err) => shepherdLog(`child error: ${errMessage(err)}`));
  pump.sink = (stream, lines) => flush(acceptLines(stream, lines, Date.now()));

  /** @type {{ code: number | null, signal: string | null } | null} */
  let exitStatus = null;
  let finished = false;

  function finish() {
    if (finished || !exitStatus) return;
    finished = true;
    const now = Date.now();
    pump.end('stdout');
    pump.end('stderr');
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
  main().catch(fatal);
}

/**
 * @typedef {{
 *   sink: (stream: 'stdout' | 'stderr', lines: string[]) => void,
 *   end: (stream: 'stdout' | 'stderr') => void,
 * }} OutputPump
 */

/**
 * A child's stdout and stderr as lines, for `sink` (which may be replaced: a warm trainer's lines
 * are held until it is handed a run, then recorded).
 * @param {import('node:child_process').ChildProcess} child
 * @param {number} maxLineBytes
 * @returns {OutputPump}
 */
function pumpOutput(child, maxLineBytes) {
  const splitters = { stdout: createLineSplitter(maxLineBytes), stderr: createLineSplitter(maxLineBytes) };
  /** @type {Record<'stdout' | 'stderr', boolean>} */
  const ended = { stdout: false, stderr: false };
  /** @type {OutputPump} */
  const pump = {
    sink: () => {},
    end(stream) {
      if (ended[stream]) return;
      ended[stream] = true;
      const last = splitters[stream].end();
      if (last !== null) pump.sink(stream, [last]);
    },
  };
  for (const stream of /** @type {const} */ (['stdout', 'stderr'])) {
    const s = child[stream];
    if (!s) continue;
    s.on('data', (/** @type {Buffer} */ chunk) => pump.sink(stream, splitters[stream].push(chunk)));
    s.on('end', () => pump.end(stream));
    s.on('error', (err) => shepherdLog(`${stream} error: ${errMessage(err)}`));
  }
  return pump;
}

/**
 * The warm trainer of a warm standby (null: none, or none any more).
 * @type {null | {
 *   spec: import('./warm.d.mts').WarmSpec,
 *   child: import('node:child_process').ChildProcess,
 *   pid: number,
 *   startTime: string | null,
 *   pump: OutputPump,
 *   ready: boolean,
 *   readyAt: number | null,
 *   dead: boolean,
 *   adopted: boolean,
 *   waiting: { stream: 'stdout' | 'stderr', line: string }[],
 *   droppedWhileWaiting: number,
 *   changed: () => void,
 * }}
 */
let warm = null;
/** A standby handed its run folder: the service is told nothing more (it may be gone). */
let handedRun = false;

/** Tell the service how our warm trainer is doing (until we are handed a run). @param {string} word */
function tellService(word) {
  if (handedRun) return;
  try {
    if (process.stdout.writable) process.stdout.write(`${word}\n`);
  } catch {
    // the service is gone: nothing to tell
  }
}

/**
 * Starts the warm trainer in standby, its stdin a pipe from us.
 * @param {import('./warm.d.mts').WarmSpec} spec
 */
function startWarm(spec) {
  const [command, ...args] = spec.argv;
  /** @type {import('node:child_process').ChildProcess} */
  let child;
  try {
    child = spawn(/** @type {string} */ (command), args, {
      cwd: spec.cwd || undefined,
      env: { ...spec.env, [STANDBY_ENV]: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
  } catch {
    tellService('died');
    return;
  }
  if (child.pid === undefined) {
    child.once('error', () => tellService('died'));
    return;
  }
  child.stdin?.on('error', () => {});
  const w = {
    spec,
    child,
    pid: child.pid,
    startTime: readProcessStartTime(child.pid),
    pump: pumpOutput(child, DEFAULT_LOG_LINE_BYTES),
    ready: false,
    /** @type {number | null} */
    readyAt: null,
    dead: false,
    adopted: false,
    /** @type {{ stream: 'stdout' | 'stderr', line: string }[]} */
    waiting: [],
    droppedWhileWaiting: 0,
    changed: () => {},
  };
  warm = w;
  w.pump.sink = (stream, lines) => {
    for (const line of lines) {
      if (!w.ready && stream === 'stdout' && isReadyLine(line)) {
        w.ready = true;
        w.readyAt = performance.timeOrigin + performance.now();
        tellService('ready');
        w.changed();
      } else if (w.waiting.length < WARM_BUFFER_LINES) w.waiting.push({ stream, line });
      else w.droppedWhileWaiting++;
    }
  };
  child.on('exit', () => {
    if (w.adopted) return;
    // Died while waiting: the run we may be handed gets a fresh trainer instead.
    w.dead = true;
    tellService('died');
    w.changed();
  });
}

/**
 * The warm trainer, if it can run `launch` (once it is ready: waits up to WARM_READY_WAIT_MS);
 * else null, after stopping one that cannot (it holds nothing: no GPU, no task).
 * @param {LaunchFile} launch
 */
async function adoptWarm(launch) {
  const w = warm;
  if (!w) return null;
  const mismatch = warmMismatch(w.spec, launch);
  if (!mismatch && !w.dead && !w.ready) {
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, WARM_READY_WAIT_MS);
      w.changed = () => {
        if (w.ready || w.dead) {
          clearTimeout(timer);
          resolve(undefined);
        }
      };
    });
    w.changed = () => {};
  }
  if (mismatch || w.dead || !w.ready || w.startTime === null) {
    shepherdLog(
      `warm trainer ${w.pid} not used: ${mismatch ?? (w.dead ? 'it died while waiting' : w.ready ? 'its start time is unknown' : 'not ready in time')}; starting a fresh trainer`,
    );
    retireWarm();
    return null;
  }
  w.adopted = true;
  // The trainer goes on in its own process group: from here on it is signalled like any trainer.
  return {
    child: w.child,
    pid: w.pid,
    startTime: w.startTime,
    pump: w.pump,
    readyAt: w.readyAt,
    waiting: w.waiting,
    droppedWhileWaiting: w.droppedWhileWaiting,
  };
}

/** Stops the warm trainer that was not handed a run: SIGTERM to its group, and EOF on its stdin. */
function retireWarm() {
  const w = warm;
  warm = null;
  if (!w || w.adopted || w.dead) return;
  try {
    process.kill(-w.pid, 'SIGTERM');
  } catch {
    // already gone
  }
  w.child.stdin?.destroy();
  w.child.stdout?.destroy();
  w.child.stderr?.destroy();
  w.child.unref();
}

/**
 * Standby: wait for the run folder on stdin (a warm standby: its trainer's spec first). Until it
 * comes, signals keep their default action (a standby holds nothing, so killing it is harmless:
 * the runner falls back to a fresh spawn, and a warm trainer sees EOF on its stdin and exits).
 * @param {boolean} withWarm
 */
function awaitRunDir(withWarm) {
  const stdin = process.stdin;
  process.stdout.on('error', () => {});
  /** @type {Buffer[]} */
  let parts = [];
  let size = 0;
  let adopted = false;
  let expectWarmSpec = withWarm;
  const giveUp = () => {
    // The service is gone (or broke the pipe, or retired us) before it handed us a run.
    if (adopted) return;
    retireWarm();
    process.exit(0);
  };
  stdin.on('end', giveUp);
  stdin.on('close', giveUp);
  stdin.on('error', giveUp);
  /** @param {string} line */
  const onLine = (line) => {
    if (expectWarmSpec) {
      expectWarmSpec = false;
      try {
        const spec = JSON.parse(line);
        if (!Array.isArray(spec.argv) || spec.argv.length === 0 || typeof spec.env !== 'object') throw new Error('bad warm spec');
        startWarm({ argv: spec.argv.map(String), cwd: String(spec.cwd ?? ''), env: spec.env });
      } catch {
        tellService('died'); // a plain standby from here on
      }
      return false;
    }
    adopted = true;
    runDir = line;
    // Nothing more to tell the service: from here on we outlive it. The rest of stdin means
    // nothing to us either: EOF, errors and further bytes are ignored.
    handedRun = true;
    stdin.removeAllListeners('data');
    stdin.on('error', () => {});
    if (!runDir.startsWith('/')) {
      retireWarm();
      process.exit(0);
    }
    try {
      // Like a fresh shepherd (spawned with cwd = runDir), and how /proc tells whose we are.
      process.chdir(runDir);
    } catch {
      // main() reports a folder it cannot use (or there is nowhere to report to)
    }
    run();
    // Closing the pipes costs about half a millisecond (stdin's close nearly all of it): after
    // main() has handed the warm trainer its assignment, which it reaches without waiting on I/O.
    setImmediate(() => {
      stdin.destroy();
      process.stdout.destroy();
    });
    return true;
  };
  stdin.on('data', (/** @type {Buffer} */ chunk) => {
    if (adopted) return;
    let rest = chunk;
    for (;;) {
      const nl = rest.indexOf(0x0a);
      if (nl < 0) {
        parts.push(rest);
        size += rest.length;
        if (size > MAX_STDIN_LINE_BYTES) giveUp();
        return;
      }
      parts.push(rest.subarray(0, nl));
      const line = Buffer.concat(parts).toString('utf8');
      parts = [];
      size = 0;
      rest = rest.subarray(nl + 1);
      if (onLine(line)) return;
    }
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
  awaitRunDir(process.argv[3] === WARM_FLAG);
} else {
  run();
}
