#!/usr/bin/env node
// Simulated trainer: speaks the trainyard trainer protocol (see README.md) without a GPU.
// No dependencies. Behaviour is driven by spec.config.simulate:
//   steps (per epoch, default 5), stepMs (default 100), startupMs (default 50),
//   failAtStep (global step; Python-like traceback on stderr, exit `exitCode`, default 1),
//   crashSignal (kill itself with this signal at failAtStep, or half-way if unset),
//   ignoreSigterm (keep going on SIGTERM: the service has to SIGKILL),
//   logLinesPerStep (extra log lines per step, every other one on stderr),
//   hostileOutput (each step also prints lines a careless service chokes on: NUL, a UTF-16
//   surrogate as UTF-8, escape sequences, junk that starts like a protocol message, an artifact
//   outside the output folder; and the very last line is `last\u0000line`),
//   checkpointEvery (write a checkpoint every N steps; else config.checkpointEverySteps; else none).
// Standby (TRAINYARD_STANDBY=1, see README.md): prints {"type":"ready"} and waits for its
// assignment on stdin, sets its variables, then runs as if started with them (EOF first: exit 0).
// Checkpoints: on SIGUSR1, and every checkpointEvery steps, it writes {step, loss} as JSON to
// $TRAINYARD_OUTPUT_DIR/checkpoints/step-<N> and prints a checkpoint message; started with
// TRAINYARD_RESUME_FROM=<such a file> it continues after that step (the loss is a function of the
// step, so a resumed run ends as an uninterrupted one does).
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const out = (line) => process.stdout.write(`${line}\n`);
const err = (line) => process.stderr.write(`${line}\n`);
const emit = (message) => out(JSON.stringify(message));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const num = (v, dflt) => (typeof v === 'number' && Number.isFinite(v) ? v : dflt);
const positiveInt = (v) => (Number.isSafeInteger(v) && v >= 1 ? v : null);

/** Standby: ready, then one line on stdin, the assignment; its variables become ours. False: EOF first (retired). */
async function awaitAssignment() {
  emit({ type: 'ready' });
  let buffered = '';
  for await (const chunk of process.stdin) {
    buffered += chunk;
    const nl = buffered.indexOf('\n');
    if (nl < 0) continue;
    const line = buffered.slice(0, nl).trim();
    if (!line) return false;
    const message = JSON.parse(line);
    for (const [k, v] of Object.entries(message.env ?? {})) process.env[k] = String(v);
    delete process.env.TRAINYARD_STANDBY; // our own children are no standbys
    process.stdin.destroy();
    out(`standby: assigned task ${process.env.TRAINYARD_TASK_ID ?? '?'} (CUDA_VISIBLE_DEVICES=${process.env.CUDA_VISIBLE_DEVICES ?? ''})`);
    return true;
  }
  return false;
}

if (process.env.TRAINYARD_STANDBY === '1' && !(await awaitAssignment())) process.exit(0);

function loadSpec() {
  const file = process.env.TRAINYARD_TASK_SPEC;
  if (!file) {
    err('error: TRAINYARD_TASK_SPEC is not set');
    process.exit(2);
  }
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    err(`error: cannot read task spec ${file}: ${e instanceof Error ? e.message : e}`);
    process.exit(2);
  }
}

const spec = loadSpec();
const config = spec.config ?? {};
const sim = config.simulate ?? {};
const taskId = process.env.TRAINYARD_TASK_ID ?? spec.id ?? 'unknown';
const outputDir = resolve(process.env.TRAINYARD_OUTPUT_DIR || spec.outputDir || 'output');
const epochs = Math.max(1, Math.floor(num(config.epochs, 1)));
const stepsPerEpoch = Math.max(1, Math.floor(num(sim.steps, 5)));
const stepMs = Math.max(0, num(sim.stepMs, 100));
const startupMs = Math.max(0, num(sim.startupMs, 50));
const logLinesPerStep = Math.max(0, Math.floor(num(sim.logLinesPerStep, 0)));
const totalSteps = epochs * stepsPerEpoch;
const failAtStep = typeof sim.failAtStep === 'number' ? sim.failAtStep : null;
const crashSignal = typeof sim.crashSignal === 'string' && sim.crashSignal ? sim.crashSignal : null;
const crashAtStep = failAtStep ?? (crashSignal ? Math.max(1, Math.ceil(totalSteps / 2)) : null);
const checkpointEvery = positiveInt(sim.checkpointEvery) ?? positiveInt(config.checkpointEverySteps);
const checkpointDir = join(outputDir, 'checkpoints');

/** The last completed global step and its loss: what a checkpoint saves. */
let step = 0;
let loss = null;
let stopping = false;

/** Loss as a function of the step alone, so a resumed run reports what an uninterrupted one does. */
function lossAt(s) {
  return Math.round((0.4 + 2.2 * Math.exp((-3 * s) / totalSteps)) * 1e4) / 1e4;
}

/** Writes {step, loss} to checkpoints/step-<step> (complete or absent: written aside, then renamed) and reports it. */
function writeCheckpoint() {
  const path = join(checkpointDir, `step-${step}`);
  mkdirSync(checkpointDir, { recursive: true });
  const partial = `${path}.partial-${process.pid}`;
  writeFileSync(partial, `${JSON.stringify({ step, loss })}\n`);
  renameSync(partial, path);
  out(`saved checkpoint at step ${step} to ${path}`);
  emit({ type: 'checkpoint', path, step });
}

/** The step and loss to continue after, from TRAINYARD_RESUME_FROM (step 0 without one); a bad checkpoint exits 2. */
function resumePoint() {
  const path = process.env.TRAINYARD_RESUME_FROM;
  if (!path) return { resumed: false, step: 0, loss: null };
  let saved;
  try {
    saved = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    err(`error: cannot read checkpoint ${path}: ${e instanceof Error ? e.message : e}`);
    process.exit(2);
  }
  const s = saved?.step;
  if (!Number.isSafeInteger(s) || s < 0 || s > totalSteps) {
    err(`error: checkpoint ${path} has no step between 0 and ${totalSteps} (it has ${JSON.stringify(s)})`);
    process.exit(2);
  }
  out(`resuming from step ${s} (${path})`);
  return { resumed: true, step: s, loss: typeof saved.loss === 'number' && saved.loss >= 0 ? saved.loss : null };
}

/** The LoRA trainer's schedule: linear warm-up over the first 3% of steps, then cosine decay to 0. */
function learningRateAt(step) {
  const base = typeof config.learningRate === 'number' ? config.learningRate : 2e-4;
  const warmup = Math.max(1, Math.ceil(totalSteps * 0.03));
  const lr =
    step <= warmup ? (base * step) / warmup : base * 0.5 * (1 + Math.cos((Math.PI * (step - warmup)) / Math.max(1, totalSteps - warmup)));
  return Number(lr.toPrecision(6));
}

function onSigterm() {
  out('received SIGTERM, saving checkpoint');
  if (sim.ignoreSigterm) {
    err('warning: ignoring SIGTERM (simulate.ignoreSigterm)');
    return;
  }
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(143), 50);
}
process.on('SIGTERM', onSigterm);
// Between steps (handlers run on the event loop): step and loss are those of a completed step.
process.on('SIGUSR1', () => {
  out('received SIGUSR1, writing a checkpoint');
  try {
    writeCheckpoint();
  } catch (e) {
    err(`warning: cannot write a checkpoint: ${e instanceof Error ? e.message : e}`);
  }
});
process.on('SIGINT', () => {
  out('received SIGINT, stopping');
  setTimeout(() => process.exit(130), 50);
});

function traceback(step) {
  err('Traceback (most recent call last):');
  err('  File "/opt/trainyard/train.py", line 212, in <module>');
  err('    main()');
  err('  File "/opt/trainyard/train.py", line 198, in main');
  err('    trainer.train()');
  err('  File "/usr/lib/python3/site-packages/transformers/trainer.py", line 1537, in train');
  err('    return inner_training_loop(');
  err(`RuntimeError: CUDA out of memory (simulated failure at step ${step})`);
}

function crash(step) {
  if (crashSignal) {
    err(`simulated crash: raising ${crashSignal} at step ${step}`);
    process.removeAllListeners('SIGTERM');
    process.removeAllListeners('SIGINT');
    try {
      process.kill(process.pid, crashSignal);
    } catch (e) {
      err(`cannot raise ${crashSignal}: ${e instanceof Error ? e.message : e}`);
      process.exit(1);
    }
    // The signal may be delivered a moment later; don't carry on training meanwhile.
    setTimeout(() => process.exit(1), 5000);
    return new Promise(() => {});
  }
  traceback(step);
  process.exit(num(sim.exitCode, 1));
}

async function main() {
  const quant = config.load4bit ? ' (4-bit)' : config.load8bit ? ' (8-bit)' : '';
  out(`trainyard simulated trainer, task ${taskId} (${spec.name ?? 'unnamed'})`);
  out(`CUDA_VISIBLE_DEVICES=${process.env.CUDA_VISIBLE_DEVICES ?? '(unset)'}`);
  out(`CUDA_DEVICE_ORDER=${process.env.CUDA_DEVICE_ORDER ?? '(unset)'}`);
  const visible = (process.env.CUDA_VISIBLE_DEVICES ?? '').split(',').filter(Boolean);
  out(`devices: ${visible.length} (requested ${spec.resources?.gpus ?? 1})`);
  out(`loading model ${spec.model ?? 'unknown'}${quant} ...`);
  err(`dataset: ${spec.datasetPath ?? '(none)'}`);
  out(
    `lora r=${config.loraRank ?? '?'} alpha=${config.loraAlpha ?? '?'} lr=${config.learningRate ?? '?'}` +
      ` batch=${config.batchSize ?? '?'}x${config.gradientAccumulation ?? 1} max_length=${config.maxLength ?? '?'}`,
  );
  const resumed = resumePoint();
  const firstStep = resumed.step;
  step = resumed.step;
  loss = resumed.loss;
  await sleep(startupMs);
  emit({ type: 'phase', phase: 'training' });
  const epochOf = (s) => Math.max(1, Math.floor((s - 1) / stepsPerEpoch) + 1);
  if (resumed.resumed) {
    // Where the checkpoint left off, so the progress a resumed run shows starts at its step.
    const at = { type: 'progress', epoch: epochOf(step), totalEpochs: epochs, step, totalSteps };
    emit({ ...at, ...(loss === null ? {} : { loss }), ...(step > 0 ? { learningRate: learningRateAt(step) } : {}) });
  }

  while (step < totalSteps) {
    await sleep(stepMs);
    const next = step + 1;
    const epoch = epochOf(next);
    if (crashAtStep !== null && next === crashAtStep) await crash(next);
    if (sim.hostileOutput) hostileLines(next);
    for (let j = 0; j < logLinesPerStep; j++) {
      (j % 2 === 0 ? out : err)(`step ${next} log ${j + 1}/${logLinesPerStep}`);
    }
    step = next;
    loss = lossAt(step);
    emit({ type: 'progress', epoch, totalEpochs: epochs, step, totalSteps, loss, learningRate: learningRateAt(step) });
    if (checkpointEvery !== null && step % checkpointEvery === 0 && step < totalSteps) writeCheckpoint();
  }
  out(
    `trained ${totalSteps - firstStep} steps in this attempt (of ${totalSteps}${firstStep > 0 ? `, resumed after step ${firstStep}` : ''})`,
  );

  mkdirSync(outputDir, { recursive: true });
  writeFileSync(
    join(outputDir, 'adapter_config.json'),
    `${JSON.stringify(
      {
        base_model_name_or_path: spec.model ?? null,
        peft_type: 'LORA',
        task_type: 'CAUSAL_LM',
        r: config.loraRank ?? 8,
        lora_alpha: config.loraAlpha ?? 16,
        simulated: true,
      },
      null,
      2,
    )}\n`,
  );
  out(`saved adapter to ${outputDir}`);
  emit({ type: 'artifact', path: outputDir });
  if (sim.hostileOutput) out('last\u0000line');
}

function hostileLines(step) {
  out(`step ${step} nul\u0000inside`);
  process.stdout.write(Buffer.concat([Buffer.from(`step ${step} surrogate `), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('\n')]));
  err(`step ${step} \u001b[31mred\u001b[0m \u001b]52;c;ZXZpbA==\u0007 \u001b]8;;https://evil.example\u001b\\link\u001b]8;;\u001b\\`);
  out(`{"type":"progress" junk at step ${step}`);
  emit({ type: 'artifact', path: '/etc/passwd' });
}

main().then(
  () => process.exit(0),
  (e) => {
    err(`error: ${e instanceof Error ? e.stack : e}`);
    process.exit(1);
  },
);
