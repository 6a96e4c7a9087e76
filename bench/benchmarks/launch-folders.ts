// launch-folders: the file-system work a launch does before its trainer can be handed the run, on
// this machine's disk: the run folder (<runs>/<task>/attempt-1), the task's output folder and the
// checked copy of its dataset (the launcher's own calls: ensurePrivateDir, mkdirSync,
// stageDataset), with the folders made ahead of need (SpareRunFolder, as the runner does) against
// the same calls with every folder made at the launch. In a fresh folder under the OS temp dir,
// where the benchmarks' services keep their data; launches of the two kinds interleaved, the spare
// made again between launches (untimed, as the runner does after a launch), and each launch after a
// wait, as a launch comes after a task that trained for a while.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stageDataset } from '../../services/server/src/datasets';
import { DATASET_DIR } from '../../services/server/src/runner/launcher';
import { SpareRunFolder } from '../../services/server/src/runner/spare-run-folder';
import { ensurePrivateDir } from '../../services/server/src/trainer/run-folder';
import {
  DATASET,
  printTable,
  ratio,
  REPO_ROOT,
  summarize,
  target,
  type BenchContext,
  type Benchmark,
  type BenchOutput,
  type Summary,
} from '../lib/common';

/**
 * The wait before each launch: a launch follows a task that trained for a while, not another
 * launch at once (back to back, in a process that never waits, the same calls take about a third
 * as long here, and the difference between the two kinds is smaller).
 */
const SPACING_MS = 100;

interface Row {
  system: string;
  backend: 'filesystem';
  n: number;
  latencyMs: Summary;
}

export const launchFolders: Benchmark = {
  name: 'launch-folders',
  description: "a launch's folders and dataset copy on this machine's disk, made ahead of need against made at the launch",
  needsDatabase: false,
  async run(ctx: BenchContext): Promise<BenchOutput> {
    const n = ctx.n ?? (ctx.quick ? 10 : 100);
    const data = mkdtempSync(join(tmpdir(), 'trainyard-bench-folders-'));
    const runsDir = join(data, 'runs');
    const outputs = join(data, 'outputs');
    mkdirSync(runsDir);
    mkdirSync(outputs);
    const spare = new SpareRunFolder(runsDir, 'bench', [DATASET_DIR], (msg) => ctx.log(msg));
    const roots = [join(REPO_ROOT, 'examples')];
    const launch = async (taskId: string, withSpare: boolean): Promise<number> => {
      const runDir = join(runsDir, taskId, 'attempt-1');
      const outputDir = join(outputs, taskId);
      const t0 = performance.now();
      if (withSpare && !spare.claim(runDir, outputDir).runDir) throw new Error('launch-folders: the spare was not taken');
      ensurePrivateDir(runsDir, runDir);
      mkdirSync(outputDir, { recursive: true });
      await stageDataset(DATASET, roots, join(runDir, DATASET_DIR));
      return performance.now() - t0;
    };
    const ahead: number[] = [];
    const atLaunch: number[] = [];
    try {
      spare.start();
      for (let i = -5; i < n; i++) {
        while (!spare.ready) await new Promise((r) => setTimeout(r, 1));
        await new Promise((r) => setTimeout(r, SPACING_MS));
        const a = await launch(`ahead-${i}`, true);
        spare.replenish();
        await new Promise((r) => setTimeout(r, SPACING_MS));
        const b = await launch(`at-launch-${i}`, false);
        if (i >= 0) {
          ahead.push(a);
          atLaunch.push(b);
        }
      }
    } finally {
      spare.close();
      rmSync(data, { recursive: true, force: true });
    }
    const rows: Row[] = [
      { system: 'folders made ahead of need (SpareRunFolder)', backend: 'filesystem', n, latencyMs: summarize(ahead) },
      { system: 'every folder made at the launch', backend: 'filesystem', n, latencyMs: summarize(atLaunch) },
    ];
    const ratios = { 'made ahead / made at the launch (p50)': ratio(rows[0]!.latencyMs.p50, rows[1]!.latencyMs.p50) };
    printTable(
      `launch-folders: run folder, output folder and dataset copy, ${n} launches each way (ms)`,
      ['system', 'n', 'p50', 'p90', 'p99', 'mean'],
      rows.map((r) => [r.system, r.n, r.latencyMs.p50, r.latencyMs.p90, r.latencyMs.p99, r.latencyMs.mean]),
    );
    return {
      params: { n, folder: tmpdir(), dataset: DATASET, spacingMs: SPACING_MS },
      rows: rows as unknown as Record<string, unknown>[],
      ratios,
      targets: [
        target(
          "a launch's folders made ahead / made at the launch (p50)",
          '< 1.0',
          ratios['made ahead / made at the launch (p50)'],
          (v) => v < 1,
        ),
      ],
      notes: [
        `Each launch: the launcher's calls for a new task's first attempt (ensurePrivateDir of the run folder, mkdirSync of the output folder, stageDataset of examples/tiny-dataset.jsonl into the run folder's dataset folder). 'made ahead': SpareRunFolder.claim first, which renames the spare's folders into place, so those calls find them made; 'at the launch': the same calls with no spare. Five launches of each kind first, not counted; ${SPACING_MS} ms of waiting before each launch.`,
      ],
    };
  },
};
