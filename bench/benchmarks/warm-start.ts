// warm start: how long the GPU sits idle between one task's trainer exit and the next queued
// task's first training step (`{"type":"phase","phase":"training"}`), with a trainer whose
// start-up is real: trainers/tiny_torch_trainer.py under Debian's python3-torch (its
// `import torch` is the cost a real trainer pays before its first step). Cold (warm trainers off:
// TRAINYARD_WARM_TRAINER_IDLE_MS=0, every task spawns its trainer) against warm (the default: a
// trainer started ahead of need in standby takes the next task), in the same run on the same
// Postgres, one service each. Times from the run folders: the previous run's exit.json `endedAt`
// (the shepherd's clock when it recorded the exit), the next run's trainer.json (`assignedAt`
// for a warm trainer: when the assignment was written to its stdin; for a cold one the file's
// mtime, right after spawn) and the `t` of its phase line in output.jsonl (the shepherd's clock
// when it read the line).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  freshSchemaName,
  printTable,
  ratio,
  summarize,
  target,
  DATASET,
  REPO_ROOT,
  type BenchContext,
  type Benchmark,
  type BenchOutput,
  type Summary,
} from '../lib/common';
import { startServer } from '../lib/server';
import { waitUntilIdle } from './lifecycle';

const PYTHON = process.env.PYTHON3_PATH ?? '/usr/bin/python3';
const TINY_TORCH = join(REPO_ROOT, 'trainers/tiny_torch_trainer.py');
/** 66 steps an epoch on the example dataset: about 2 s of training a task, longer than a warm trainer takes to be ready. */
const EPOCHS = 20;

interface Gap {
  warm: boolean;
  /** Previous trainer's exit recorded → the transaction recording it began (TaskCompleted's time, the database's now()). */
  committedMs: number;
  /** Previous trainer's exit recorded → the next run's launch.json written (its mtime). */
  launchFileMs: number;
  /** Previous trainer's exit recorded → next trainer handed its task (assignment written, or spawned). */
  handedMs: number;
  /** Previous trainer's exit recorded → next trainer's first training step (its phase line read). */
  trainingMs: number;
}

interface Row {
  system: string;
  backend: 'postgres';
  mode: 'cold' | 'warm';
  samples: number;
  warmUsed: number;
  committedMs: Summary;
  launchFileMs: Summary;
  handedMs: Summary;
  trainingMs: Summary;
}

function readGaps(tasks: { trainer?: { runDir: string } | null; finishedAt?: string | null }[]): Gap[] {
  const runs = tasks
    .filter((t) => t.trainer?.runDir)
    .map((t) => {
      const dir = t.trainer!.runDir;
      const exit = JSON.parse(readFileSync(join(dir, 'exit.json'), 'utf8')) as { endedAt: number; code: number | null };
      const trainer = JSON.parse(readFileSync(join(dir, 'trainer.json'), 'utf8')) as { warm?: boolean; assignedAt?: number };
      const phase = readFileSync(join(dir, 'output.jsonl'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { line: string; t: number })
        .find((l) => l.line.includes('"phase"') && l.line.includes('"training"'));
      const spawned = existsSync(join(dir, 'trainer.json')) ? statSync(join(dir, 'trainer.json')).mtimeMs : NaN;
      return {
        exit,
        finishedAt: Date.parse(t.finishedAt ?? ''),
        warm: trainer.warm === true,
        handedAt: trainer.assignedAt ?? spawned,
        phaseAt: phase?.t ?? NaN,
        launchedAt: statSync(join(dir, 'launch.json')).mtimeMs,
      };
    })
    .sort((a, b) => a.launchedAt - b.launchedAt);
  const gaps: Gap[] = [];
  for (let k = 0; k + 1 < runs.length; k++) {
    const prev = runs[k]!;
    const next = runs[k + 1]!;
    gaps.push({
      warm: next.warm,
      committedMs: prev.finishedAt - prev.exit.endedAt,
      launchFileMs: next.launchedAt - prev.exit.endedAt,
      handedMs: next.handedAt - prev.exit.endedAt,
      trainingMs: next.phaseAt - prev.exit.endedAt,
    });
  }
  return gaps;
}

export const warmStart: Benchmark = {
  name: 'warm-start',
  description: "GPU idle from a trainer's exit to the next task's first training step, tiny torch trainer, cold vs warm trainers",
  async run(ctx: BenchContext): Promise<BenchOutput> {
    if (!existsSync(PYTHON))
      throw new Error(`${PYTHON} not found: the warm-start benchmark runs the tiny torch trainer (apt-get install python3-torch)`);
    const n = ctx.n ?? (ctx.quick ? 4 : 21);
    const rows: Row[] = [];
    const notes: string[] = [];
    for (const mode of ['cold', 'warm'] as const) {
      const server = await startServer({
        backend: { kind: 'postgres', url: ctx.url, schema: freshSchemaName(`warm${mode}`) },
        env: {
          TRAINYARD_TRAINER: JSON.stringify([PYTHON, TINY_TORCH]),
          TRAINYARD_WARM_TRAINER_IDLE_MS: mode === 'cold' ? '0' : '300000',
        },
      });
      try {
        const { client } = server;
        const ids: string[] = [];
        for (let i = 0; i < n; i++) {
          const t = await client.tasks.create.mutate({
            model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
            datasetPath: DATASET,
            name: `warm-start ${mode} ${i}`,
            config: { epochs: EPOCHS, batchSize: 1, gradientAccumulation: 16 },
          });
          ids.push(t.id);
        }
        const tasks = await waitUntilIdle(client, ids, 120_000 + n * 20_000);
        const bad = tasks.filter((t) => t.status !== 'COMPLETED');
        if (bad.length)
          throw new Error(
            `${bad.length} ${mode} task(s) did not complete: ${bad[0]!.id} ${bad[0]!.status} ${bad[0]!.error?.message ?? ''}`,
          );
        const gaps = readGaps(tasks);
        rows.push({
          system: 'trainyard',
          backend: 'postgres',
          mode,
          samples: gaps.length,
          warmUsed: gaps.filter((g) => g.warm).length,
          committedMs: summarize(gaps.map((g) => g.committedMs)),
          launchFileMs: summarize(gaps.map((g) => g.launchFileMs)),
          handedMs: summarize(gaps.map((g) => g.handedMs)),
          trainingMs: summarize(gaps.map((g) => g.trainingMs)),
        });
        ctx.log(`${mode}: ${gaps.length} gaps, to training p50 ${summarize(gaps.map((g) => g.trainingMs)).p50} ms`);
      } finally {
        await server.dispose();
      }
    }
    printTable(
      "stages after the previous trainer's exit was recorded (p50, ms)",
      ['mode', 'TaskCompleted tx start', 'next launch.json', 'next trainer handed its task', 'next first training step'],
      rows.map((r) => [r.mode, r.committedMs.p50, r.launchFileMs.p50, r.handedMs.p50, r.trainingMs.p50]),
    );
    printTable(
      `GPU idle from a trainer's exit to the next task (tiny torch trainer, ms, ${n} tasks a mode)`,
      ['mode', 'gaps', 'warm used', 'handed p50', 'handed p90', 'to training p50', 'to training p90', 'to training max'],
      rows.map((r) => [
        r.mode,
        r.samples,
        r.warmUsed,
        r.handedMs.p50,
        r.handedMs.p90,
        r.trainingMs.p50,
        r.trainingMs.p90,
        r.trainingMs.max,
      ]),
    );
    const cold = rows.find((r) => r.mode === 'cold')!;
    const warm = rows.find((r) => r.mode === 'warm')!;
    const warmOverCold = ratio(warm.trainingMs.p50, cold.trainingMs.p50);
    notes.push(
      "Gaps are between consecutive tasks on one GPU slot, each queued before the previous ended. 'handed': the previous run's exit.json endedAt (the shepherd's clock as it records the exit) to the next trainer being handed its task (warm: trainer.json assignedAt, written as the assignment goes to its stdin; cold: trainer.json's mtime, right after spawn). 'to training': to the next run's phase-training line as the shepherd read it (output.jsonl t, ms).",
      `Trainer: ${PYTHON} ${TINY_TORCH} (Debian python3-torch), ${EPOCHS} epochs of the example dataset a task. The first task of each mode starts cold (no task was queued before it); warm used counts the gaps whose next trainer was a warm one.`,
    );
    return {
      params: { tasks: n, epochs: EPOCHS, trainer: 'trainers/tiny_torch_trainer.py', python: PYTHON },
      rows: rows as unknown as Record<string, unknown>[],
      ratios: { 'warm/cold idle to first training step (p50)': warmOverCold },
      targets: [
        target('warm idle gap to first training step / cold (p50)', '≤ 0.10', warmOverCold, (v) => v <= 0.1),
        target("scheduler's part, exit → assignment handed to the warm trainer, p50 (ms)", '≤ 15 ms', warm.handedMs.p50, (v) => v <= 15),
      ],
      notes,
      details: {},
    };
  },
};
