// A fake nvidia-smi for specs (the true edge the probe talks to): one fixed POSIX sh script that
// answers each argument list the probe uses with a file beside it, copied from a recorded scenario
// in test/fixtures/nvidia-smi/ or given by the spec. No path or data is ever written into the
// script's text; it finds its files from its own location.
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { APPS_QUERY_ARGS, GPU_QUERY_ARGS, MIG_LIST_ARGS, MIG_QUERY_ARGS } from '../src/gpu/probe';

/** The recorded scenarios (see its README.md). */
export const NVIDIA_SMI_FIXTURES = join(import.meta.dirname, 'fixtures/nvidia-smi');

/** The files a scenario may hold: one per query the probe makes, and how every call ends. */
export interface FakeNvidiaSmiFiles {
  'gpus.csv'?: string;
  'apps.csv'?: string;
  'list.txt'?: string;
  'query.xml'?: string;
  /** Printed to stderr on every call. */
  'stderr.txt'?: string;
  /** Exit status of every call (default 0). */
  'exit-code'?: string;
}
type AnswerFile = keyof FakeNvidiaSmiFiles;
const FILES: readonly AnswerFile[] = ['gpus.csv', 'apps.csv', 'list.txt', 'query.xml', 'stderr.txt', 'exit-code'];

/** Which file answers which argument list (an argument list not here is refused with exit 2). */
const ANSWERS: readonly [readonly string[], AnswerFile][] = [
  [GPU_QUERY_ARGS, 'gpus.csv'],
  [APPS_QUERY_ARGS, 'apps.csv'],
  [MIG_LIST_ARGS, 'list.txt'],
  [MIG_QUERY_ARGS, 'query.xml'],
];

const SCRIPT = `#!/bin/sh
# Fake nvidia-smi (services/server/test/fake-nvidia-smi.ts): answers each argument list listed in
# answers.tsv with its file in answers/, logs every call to calls.log.
here=$(dirname -- "$0")
args="$*"
printf '%s\\n' "$args" >> "$here/calls.log"
if [ -n "$FAKE_NVIDIA_SMI_SLEEP" ]; then exec sleep "$FAKE_NVIDIA_SMI_SLEEP"; fi
[ -f "$here/answers/stderr.txt" ] && cat "$here/answers/stderr.txt" >&2
code=0
[ -f "$here/answers/exit-code" ] && code=$(cat "$here/answers/exit-code")
tab=$(printf '\\t')
while IFS="$tab" read -r want file; do
  if [ "$want" = "$args" ]; then
    [ -f "$here/answers/$file" ] && cat "$here/answers/$file"
    exit "$code"
  fi
done < "$here/answers.tsv"
echo "fake nvidia-smi: unexpected arguments: $args" >&2
exit 2
`;

export interface FakeNvidiaSmi {
  /** The fake binary: give it as TRAINYARD_NVIDIA_SMI (or GpuProbe's nvidiaSmiPath). */
  path: string;
  /** Its folder: first on PATH, `nvidia-smi` is found there. */
  binDir: string;
  /** The argument list of every call so far (joined by spaces), oldest first. */
  calls(): string[];
  /** Change answers while it is in use: each given file is replaced whole (a probe never reads a torn file); others stay. */
  set(files: FakeNvidiaSmiFiles): void;
}

/**
 * Writes a fake `nvidia-smi` into `dir` (created if missing; keep one fake per folder) answering
 * as the recorded scenario named `scenario` does (a folder of test/fixtures/nvidia-smi, e.g.
 * `four-gpus-mig`), or with the given files.
 */
export function installFakeNvidiaSmi(dir: string, scenario: string | FakeNvidiaSmiFiles): FakeNvidiaSmi {
  const answers = join(dir, 'answers');
  mkdirSync(answers, { recursive: true });
  if (typeof scenario === 'string') {
    const from = join(NVIDIA_SMI_FIXTURES, scenario);
    if (!/^[a-z0-9][a-z0-9-]*$/.test(scenario) || !existsSync(from))
      throw new Error(`no recorded nvidia-smi scenario ${JSON.stringify(scenario)}`);
    for (const f of readdirSync(from)) if ((FILES as readonly string[]).includes(f)) copyFileSync(join(from, f), join(answers, f));
  } else {
    writeAnswers(answers, scenario);
  }
  for (const [args] of ANSWERS) {
    if (args.some((a) => /[\t\n]/.test(a))) throw new Error(`argument with a tab or newline: ${JSON.stringify(args)}`);
  }
  writeFileSync(join(dir, 'answers.tsv'), ANSWERS.map(([args, file]) => `${args.join(' ')}\t${file}\n`).join(''));
  const path = join(dir, 'nvidia-smi');
  writeFileSync(path, SCRIPT);
  chmodSync(path, 0o755);
  const log = join(dir, 'calls.log');
  return {
    path,
    binDir: dir,
    calls: () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : []),
    set: (files) => writeAnswers(answers, files),
  };
}

function writeAnswers(answers: string, files: FakeNvidiaSmiFiles): void {
  for (const name of FILES) {
    if (!(name in files)) continue;
    const text = files[name];
    const file = join(answers, name);
    if (text === undefined) {
      rmSync(file, { force: true });
      continue;
    }
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  }
}
