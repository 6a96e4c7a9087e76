#!/usr/bin/env node
// Bench trainer: as little work as a trainer can do, timed. Configure the service with
//   TRAINYARD_TRAINER='["node","<repo>/bench/instant-trainer.mjs"]'
// It speaks just enough of the trainer protocol (a training phase and one progress line), then
// records in <runDir>/bench-timing.json, just before it exits:
//   timeOrigin      when this process started, as Node measured it (epoch ms, sub-ms precision)
//   firstStatement  when this module began to run (after Node's own start-up)
//   endedAt         just before process.exit
// While a file named `bench-hold` exists in the service's data folder (two levels above the
// runs folder of this run), it waits before exiting: the bench holds the first task on the GPU
// that way until every other task is queued behind it.
// spec.config.simulate.stepMs: how long to wait after the protocol lines before exiting
// (default 100 ms), so the service has digested them and the exit is all that is left.
const firstStatement = performance.timeOrigin + performance.now();
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const specFile = process.env.TRAINYARD_TASK_SPEC;
if (!specFile) {
  process.stderr.write('instant-trainer: TRAINYARD_TASK_SPEC is not set\n');
  process.exit(2);
}
const runDir = dirname(specFile);
const spec = JSON.parse(readFileSync(specFile, 'utf8'));
const dwellMs = Number(spec.config?.simulate?.stepMs ?? 100);
// <data>/runs/<task>/attempt-N/task.json → <data>/bench-hold
const holdFile = join(runDir, '..', '..', '..', 'bench-hold');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

process.stdout.write(`${JSON.stringify({ type: 'phase', phase: 'training' })}\n`);
process.stdout.write(`${JSON.stringify({ type: 'progress', epoch: 1, totalEpochs: 1, step: 1, totalSteps: 1, loss: 0.5 })}\n`);
await sleep(dwellMs);
while (existsSync(holdFile)) await sleep(5);

const endedAt = performance.timeOrigin + performance.now();
writeFileSync(
  join(runDir, 'bench-timing.json'),
  `${JSON.stringify({ pid: process.pid, timeOrigin: performance.timeOrigin, firstStatement, endedAt })}\n`,
);
process.exit(0);
