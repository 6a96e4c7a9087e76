#!/usr/bin/env node
// @ts-check
// Trainer shepherd: `node shepherd.mjs <runDir>`, or `node shepherd.mjs --standby`.
//
// Started detached (own session, unref'ed) by run.ts so that it outlives the service. It runs
// the trainer described by <runDir>/launch.json as the leader of its own process group and
// records everything in files of <runDir>:
//   trainer.json  {pid, startTime}                      written atomically right after spawn
//   output.jsonl  {"seq","stream","line","t"} per line   appended synchronously, in order
//   exit.json     {code, signal, endedAt[, error]}       written atomically, last of all
// Plain JavaScript (no tsx) so it starts fast and has no dependencies.
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
import { closeSync, fchmodSync, fsyncSync, openSync, readFileSync, renameSync, writeSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { safeText } from '@trainyard/domain/safe-text';
import { parseTrainerLine } from './protocol-parse.mjs';

/**
 * @typedef {object} LaunchFile
 * @property {string[]} argv
 * @property {Record<string, string>} env
 * @property {string} cwd
 * @property {number} maxLineBytes
 * @property {number} maxLinesPerSecond
 * @property {number} [maxProtocolLinesPerSecond]
 * @property {number} [maxProtocolLinesPerTask]
 * @property {number} [maxBytesPerTask]
 */

const DEFAULT_MAX_LINE_BYTES = 16 * 1024;
const DEFAULT_MAX_LINES_PER_SECOND = 500;
/** After the trainer exits, how long to wait for its stdio to close (a grandchild may hold it). */
const STDIO_GRACE_MS = 3000;

/** Run files hold a trainer's output: this user's only, whatever the umask (run.ts does the same). */
const PRIVATE_FILE_MODE = 0o600;

/**
 * Opens a run file with mode 0600 (set again with fchmod: the umask may have taken bits away).
 * @param {string} file
 * @param {'w' | 'a'} flags
 */
function openPrivate(file, flags) {
  const fd = openSync(file, flags, PRIVATE_FILE_MODE);
  fchmodSync(fd, PRIVATE_FILE_MODE);
  return fd;
}

const STANDBY_FLAG = '--standby';
/** Longest run folder line a standby accepts (a path; the service writes it in one write). */
const MAX_LINE_BYTES = 16 * 1024;

/** The run folder this shepherd works in: from argv, or for a standby from its stdin line. */
let runDir = process.argv[2] ?? '';
if (!runDir) {
  process.stderr.write('usage: shepherd.mjs <runDir> | shepherd.mjs --standby\n');
  process.exit(2);
}

/** @param {string} message */
function shepherdLog(message) {
  try {
    appendFileSync(join(runDir, 'shepherd.log'), `${new Date().toISOString()} ${message}\n`, { mode: PRIVATE_FILE_MODE });
  } catch {
    // nowhere left to report to
  }
}

/**
 * Writes `value` as JSON to `file` atomically: temp file, fsync, rename.
 * @param {string} file
 * @param {unknown} value
 */
function writeJsonAtomic(file, value) {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openPrivate(tmp, 'w');
  try {
    writeAll(fd, Buffer.from(`${JSON.stringify(value)}\n`));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

/**
 * @param {number} fd
 * @param {Buffer} buf
 */
function writeAll(fd, buf) {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

// Mirrors parseProcStat/readProcessStartTime in proc.ts: field 22 of /proc/<pid>/stat,
// counted after the last ')' because field 2, (comm), may contain spaces and parens.
/** @param {number} pid @returns {string | null} */
function readProcessStartTime(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const startTime = text
    .slice(close + 1)
    .trim()
    .split(/\s+/)[22 - 3];
  return startTime && /^\d+$/.test(startTime) ? startTime : null;
}

/**
 * Largest cut point <= max that does not split a UTF-8 character of `buf`.
 * @param {Buffer} buf
 * @param {number} max
 */
function utf8Boundary(buf, max) {
  let i = Math.min(max, buf.length);
  // buf[i] is the first byte dropped; while it is a continuation byte, we'd split a char.
  while (i > 0 && i < buf.length && ((buf[i] ?? 0) & 0xc0) === 0x80) i--;
  return i;
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
  writeJsonAtomic(join(runDir, 'exit.json'), value);
}

function main() {
  /** @type {LaunchFile} */
  let launch;
  try {
    launch = JSON.parse(readFileSync(join(runDir, 'launch.json'), 'utf8'));
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
  const maxLineBytes = positiveInt(launch.maxLineBytes, DEFAULT_MAX_LINE_BYTES);
  const maxLinesPerSecond = positiveInt(launch.maxLinesPerSecond, DEFAULT_MAX_LINES_PER_SECOND);
  // Absent: no limit (the service's configuration is the one home of their defaults).
  const maxProtocolLinesPerSecond = positiveInt(launch.maxProtocolLinesPerSecond, Infinity);
  const maxProtocolLinesPerTask = positiveInt(launch.maxProtocolLinesPerTask, Infinity);
  const maxBytesPerTask = positiveInt(launch.maxBytesPerTask, Infinity);

  outFd = openPrivate(join(runDir, 'output.jsonl'), 'a');

  // ---- limits ----
  // Plain log lines: a rate per second, and a total of bytes per run past which they are
  // dropped. Protocol lines (a full parse decides, so a junk line that only starts like one is a
  // plain line): their own rate and total, and not the byte total (they carry the run's
  // progress and artifacts). A progress message the rate drops is kept until the second ends
  // and then written, if no newer one came, so the last progress of a burst is never lost.
  let windowStart = 0;
  let windowCount = 0;
  let dropped = 0;
  let protocolWindowCount = 0;
  let protocolDropped = 0;
  let protocolTotal = 0;
  let protocolOverTotal = 0;
  /** @type {string | null} */
  let pendingProgress = null;
  let bytesStored = 0;
  let overBytes = 0;
  /** @type {NodeJS.Timeout | null} */
  let windowTimer = null;

  /** @param {number} now @returns {string[]} records to write */
  function rollWindow(now) {
    /** @type {string[]} */
    const out = [];
    if (pendingProgress !== null) {
      protocolTotal += 1;
      out.push(record('stdout', pendingProgress, now));
      pendingProgress = null;
    }
    if (dropped > 0) {
      out.push(record('stderr', `[trainyard] dropped ${dropped} lines (rate limit)`, now));
      dropped = 0;
    }
    if (protocolDropped > 0) {
      out.push(
        record(
          'stderr',
          `[trainyard] dropped ${protocolDropped} protocol lines (rate limit, TRAINYARD_LOG_PROTOCOL_LINES_PER_SECOND)`,
          now,
        ),
      );
      protocolDropped = 0;
    }
    windowStart = now;
    windowCount = 0;
    protocolWindowCount = 0;
    if (windowTimer) {
      clearTimeout(windowTimer);
      windowTimer = null;
    }
    return out;
  }

  /** At the end of the run: how many lines the totals dropped, one marker line each. @param {number} now */
  function totalsReport(now) {
    /** @type {string[]} */
    const out = [];
    if (overBytes > 0)
      out.push(
        record(
          'stderr',
          `[trainyard] dropped ${overBytes} log lines past ${maxBytesPerTask} bytes of output (TRAINYARD_LOG_MAX_BYTES_PER_TASK)`,
          now,
        ),
      );
    if (protocolOverTotal > 0)
      out.push(
        record(
          'stderr',
          `[trainyard] dropped ${protocolOverTotal} protocol lines past ${maxProtocolLinesPerTask} (TRAINYARD_LOG_PROTOCOL_LINES_PER_TASK)`,
          now,
        ),
      );
    overBytes = 0;
    protocolOverTotal = 0;
    return out;
  }

  /** @param {number} now */
  function armWindowTimer(now) {
    if (!windowTimer) windowTimer = setTimeout(onWindowTimer, Math.max(0, windowStart + 1000 - now));
  }

  function onWindowTimer() {
    windowTimer = null;
    flush(rollWindow(Date.now()));
  }

  /**
   * @param {'stdout' | 'stderr'} stream
   * @param {string} line
   * @param {number} t
   */
  function record(stream, line, t) {
    seq += 1;
    return `${JSON.stringify({ seq, stream, line, t })}\n`;
  }

  /** @param {string[]} records */
  function flush(records) {
    if (records.length === 0 || outFd === null) return;
    writeAll(outFd, Buffer.from(records.join('')));
  }

  /**
   * @param {'stdout' | 'stderr'} stream
   * @param {string} line
   * @param {number} now
   * @param {string[]} out
   */
  function acceptLine(stream, rawLine, now, out) {
    // Postgres refuses NUL (and jsonb lone surrogates): such a line once failed its whole batch
    // and, as a trainer's last line, kept its task from ever ending.
    const line = safeText(rawLine);
    if (now - windowStart >= 1000) out.push(...rollWindow(now));
    const parsed = stream === 'stdout' ? parseTrainerLine(line) : null;
    if (parsed?.kind === 'message') {
      if (protocolTotal >= maxProtocolLinesPerTask) {
        if (protocolOverTotal === 0)
          out.push(
            record(
              'stderr',
              `[trainyard] ${maxProtocolLinesPerTask} protocol lines reached (TRAINYARD_LOG_PROTOCOL_LINES_PER_TASK): further ones are dropped`,
              now,
            ),
          );
        protocolOverTotal += 1;
        return;
      }
      if (protocolWindowCount < maxProtocolLinesPerSecond) {
        protocolWindowCount += 1;
        protocolTotal += 1;
        out.push(record(stream, line, now));
        return;
      }
      if (parsed.message.type === 'progress') {
        if (pendingProgress !== null) protocolDropped += 1;
        pendingProgress = line;
      } else {
        protocolDropped += 1;
      }
      armWindowTimer(now);
      return;
    }
    const bytes = Buffer.byteLength(line);
    if (overBytes > 0 || bytesStored + bytes > maxBytesPerTask) {
      if (overBytes === 0)
        out.push(
          record(
            'stderr',
            `[trainyard] ${maxBytesPerTask} bytes of output reached (TRAINYARD_LOG_MAX_BYTES_PER_TASK): further log lines are dropped`,
            now,
          ),
        );
      overBytes += 1;
      return;
    }
    if (windowCount < maxLinesPerSecond) {
      windowCount += 1;
      bytesStored += bytes;
      out.push(record(stream, line, now));
      return;
    }
    dropped += 1;
    armWindowTimer(now);
  }

  // ---- line splitting with a byte cap per line ----
  /**
   * @param {'stdout' | 'stderr'} stream
   */
  function lineSplitter(stream) {
    /** @type {Buffer[]} */
    let parts = [];
    let kept = 0; // bytes held in parts (at most maxLineBytes + 4)
    let total = 0; // bytes of the current line seen so far
    const keepMax = maxLineBytes + 4; // a few extra bytes to find a UTF-8 boundary

    /** @param {Buffer} seg */
    function add(seg) {
      total += seg.length;
      if (kept < keepMax) {
        const take = seg.subarray(0, keepMax - kept);
        parts.push(take);
        kept += take.length;
      }
    }

    /** @param {number} now @param {string[]} out */
    function endLine(now, out) {
      let buf = parts.length === 1 ? /** @type {Buffer} */ (parts[0]) : Buffer.concat(parts);
      let lineTotal = total;
      parts = [];
      kept = 0;
      total = 0;
      // Windows-style line endings: drop the '\r' before '\n' (only if the line wasn't cut).
      if (lineTotal <= keepMax && buf.length > 0 && buf[buf.length - 1] === 0x0d) {
        buf = buf.subarray(0, buf.length - 1);
        lineTotal -= 1;
      }
      let text;
      if (lineTotal > maxLineBytes) {
        const cut = utf8Boundary(buf, maxLineBytes);
        text = `${buf.subarray(0, cut).toString('utf8')}… [cut ${lineTotal - cut} bytes]`;
      } else {
        text = buf.toString('utf8');
      }
      acceptLine(stream, text, now, out);
    }

    return {
      /** @param {Buffer} chunk @param {number} now @param {string[]} out */
      push(chunk, now, out) {
        let start = 0;
        for (;;) {
          const nl = chunk.indexOf(0x0a, start);
          if (nl < 0) break;
          add(chunk.subarray(start, nl));
          endLine(now, out);
          start = nl + 1;
        }
        if (start < chunk.length) add(chunk.subarray(start));
      },
      /** @param {number} now @param {string[]} out */
      end(now, out) {
        if (total > 0) endLine(now, out);
      },
    };
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
  writeJsonAtomic(join(runDir, 'trainer.json'), {
    pid: child.pid,
    startTime: readProcessStartTime(child.pid),
  });

  child.on('error', (err) => shepherdLog(`child error: ${errMessage(err)}`));

  const splitters = { stdout: lineSplitter('stdout'), stderr: lineSplitter('stderr') };
  /** @param {'stdout' | 'stderr'} stream */
  const onData = (stream) => (/** @type {Buffer} */ chunk) => {
    /** @type {string[]} */
    const out = [];
    splitters[stream].push(chunk, Date.now(), out);
    flush(out);
  };
  /** @type {Record<'stdout' | 'stderr', boolean>} */
  const ended = { stdout: false, stderr: false };
  /** @param {'stdout' | 'stderr'} stream */
  const onEnd = (stream) => () => {
    if (ended[stream]) return;
    ended[stream] = true;
    /** @type {string[]} */
    const out = [];
    splitters[stream].end(Date.now(), out);
    flush(out);
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
    /** @type {string[]} */
    const out = [];
    onEnd('stdout')();
    onEnd('stderr')();
    out.push(...rollWindow(now), ...totalsReport(now));
    flush(out);
    // Visible first, durable right after: exit.json is renamed into place before the fsyncs, so
    // the service (which reads the page cache, where every output line already is) learns of the
    // exit two fsyncs sooner, and the next task starts that much sooner. Both files reach the
    // disk before this process ends; only a power loss within those milliseconds could lose
    // them, and the task is then failed as lost, which is what a power loss does to it anyway.
    exitWritten = true;
    const exitFile = join(runDir, 'exit.json');
    const tmp = `${exitFile}.tmp-${process.pid}`;
    const exitFd = openPrivate(tmp, 'w');
    writeAll(exitFd, Buffer.from(`${JSON.stringify({ code: exitStatus.code, signal: exitStatus.signal, endedAt: now })}\n`));
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
      if (size > MAX_LINE_BYTES) process.exit(0);
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
