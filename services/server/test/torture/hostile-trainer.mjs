#!/usr/bin/env node
// A scripted hostile trainer for the specs (TRAINYARD_TRAINER='["node","<this file>"]'): the
// task's name picks what it prints, each a way a trainer's output once broke or could break the
// service. Every scenario ends the way a good trainer does (phase, output, exit 0) unless it says
// otherwise, so a spec can check the task still COMPLETES.
//   nul-last        last line `last\u0000line`, then exit 0
//   refused-last    last lines 'kept' and 'refuse me' (a spec makes the database refuse the latter)
//   nul-mid         a NUL in a line in the middle of a batch of lines
//   lone-surrogate  a UTF-16 surrogate encoded as UTF-8 (no valid character), and a JSON-escaped one
//   artifacts       1,000 artifacts inside the output folder
//   artifacts-outside  paths outside the output folder, one too long, one relative inside it
//   junk-protocol   lines that only start like protocol messages, far past the log rate limit
//   escapes         ANSI colours, OSC 52 (clipboard), OSC 8 (link), C0/C1 controls
//   (other)         a short ordinary run
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const spec = JSON.parse(readFileSync(process.env.TRAINYARD_TASK_SPEC ?? '', 'utf8'));
const outputDir = process.env.TRAINYARD_OUTPUT_DIR ?? '';
const out = (text) => process.stdout.write(`${text}\n`);
const emit = (message) => out(JSON.stringify(message));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Every write reaches the pipe before the process exits. */
const drained = () => new Promise((r) => process.stdout.write('', () => process.stderr.write('', r)));

async function main() {
  emit({ type: 'phase', phase: 'training' });
  mkdirSync(outputDir, { recursive: true });
  switch (spec.name) {
    case 'nul-last':
      out('training done');
      emit({ type: 'progress', step: 1, totalSteps: 1 });
      out('last\u0000line');
      await drained();
      return; // the NUL line is the last one
    case 'refused-last':
      // A spec makes the database refuse the line 'refuse me' (whatever the reason): the exit
      // must be recorded all the same.
      out('kept');
      out('refuse me');
      await drained();
      return;
    case 'nul-mid':
      // One write: the lines reach the service together, in one batch.
      process.stdout.write(['before', 'mid\u0000dle', 'after'].join('\n') + '\n');
      await sleep(200);
      out('end');
      break;
    case 'lone-surrogate':
      process.stdout.write(Buffer.concat([Buffer.from('lone '), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from(' surrogate\n')]));
      out('{"type":"artifact","path":"\\ud800"}'); // a protocol message whose path is a lone surrogate
      out('escaped \\ud800 text stays text');
      break;
    case 'artifacts':
      for (let i = 0; i < 1000; i++) emit({ type: 'artifact', path: join(outputDir, `checkpoint-${i}`) });
      out('artifacts reported');
      break;
    case 'artifacts-outside':
      emit({ type: 'artifact', path: '/etc/passwd' });
      emit({ type: 'artifact', path: join(outputDir, '..', '..', 'escape') });
      emit({ type: 'artifact', path: '../sibling' });
      emit({ type: 'artifact', path: `${outputDir}/${'x'.repeat(2000)}` }); // a protocol line under the line cut, a path over its limit
      emit({ type: 'artifact', path: 'adapter' }); // relative: inside the output folder
      out('artifacts reported');
      break;
    case 'junk-protocol':
      for (let i = 0; i < 5000; i++) out(`{"type":"progress" junk ${i}`);
      break;
    case 'escapes':
      out('\u001b[31mred\u001b[0m plain');
      out('clip\u001b]52;c;ZXZpbA==\u0007board');
      out('\u001b]8;;https://evil.example\u001b\\link\u001b]8;;\u001b\\ text');
      out('bell\u0007 back\bspace c1\u009b31m csi \u0085 nel\ttab');
      break;
    default:
      out('an ordinary run');
  }
  out('done');
  await drained();
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`error: ${e instanceof Error ? e.stack : e}\n`);
    process.exit(1);
  },
);
