// OpenAI's objects built from tasks: the status mapping covers every domain status, ids and
// names round-trip, the create body's refusals name OpenAI's parameter, "auto" takes Trainyard's
// defaults, and the estimate of a running job's finish follows its steps.
import { describe, expect, it } from 'vitest';
import { EMPTY_PROGRESS, TASK_STATUSES, type StoredTaskEvent, type TaskRecord } from '@trainyard/domain';
import type { OpenAiJobRow } from '@trainyard/store/openai';
import { createTaskInput } from '../schemas';
import {
  BASE_LEARNING_RATE,
  createBodyProblem,
  createJobBody,
  createTaskInputOf,
  estimatedFinish,
  fineTunedModelName,
  JOB_STATUS,
  positionOf,
  resultCsv,
  taskIdOfJob,
  taskIdOfResultFile,
  toEvent,
  toJob,
  unsupportedProblem,
} from './objects';

const config = createTaskInput.shape.config.parse({ epochs: 2 });
const task = (over: Partial<TaskRecord> = {}): TaskRecord =>
  ({
    id: 'tabc123',
    status: 'QUEUED',
    spec: {
      name: 'n',
      model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
      datasetPath: '/d/train.jsonl',
      outputDir: '/o',
      config,
      timeoutMs: 60_000,
      resources: { gpus: 1, memoryMb: null, shared: false, memorySource: null },
      owner: 'alice',
    },
    progress: EMPTY_PROGRESS,
    createdAt: '2026-01-01T00:00:00.000Z',
    queuedAt: null,
    queuedPosition: null,
    startedAt: null,
    trainingAt: null,
    finishedAt: null,
    deadlineAt: null,
    error: null,
    trainer: null,
    attempt: 0,
    devices: [],
    runnerId: null,
    stop: null,
    artifacts: [],
    cancelReason: null,
    deleted: false,
    version: 1,
    ...over,
  }) as TaskRecord;
const job: OpenAiJobRow = {
  taskId: 'tabc123',
  owner: 'alice',
  model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
  trainingFile: 'file-1',
  validationFile: null,
  suffix: 'support',
  seed: 7,
  metadata: null,
  method: 'supervised',
  createdAt: '2026-01-01T00:00:00.000Z',
};
const event = (e: Pick<StoredTaskEvent, 'type' | 'data'>): StoredTaskEvent =>
  ({
    ...e,
    position: '42',
    streamId: 'tabc123',
    version: 3,
    recordedAt: '2026-01-01T00:01:00.000Z',
    metadata: { actor: 'alice', schemaVersion: 2 },
  }) as StoredTaskEvent;

describe('OpenAI objects', () => {
  it('every domain status maps to one of OpenAI’s job statuses', () => {
    const openai = ['validating_files', 'queued', 'running', 'succeeded', 'failed', 'cancelled'];
    expect(Object.keys(JOB_STATUS).sort()).toEqual([...TASK_STATUSES].sort());
    for (const s of TASK_STATUSES) expect(openai).toContain(JOB_STATUS[s]);
    expect(new Set(Object.values(JOB_STATUS))).toEqual(new Set(openai));
  });

  it('ids: a job id names its task, event and checkpoint ids their log position; anything else is refused', () => {
    expect(taskIdOfJob('ftjob-tabc123')).toBe('tabc123');
    for (const bad of ['tabc123', 'ftjob-', 'ftjob-a/b', 'ftjob-a b', `ftjob-${'a'.repeat(65)}`]) expect(taskIdOfJob(bad)).toBeNull();
    expect(taskIdOfResultFile('file-ftresult-tabc123')).toBe('tabc123');
    expect(taskIdOfResultFile('file-0123')).toBeNull();
    expect(positionOf('ftevent-42', 'ftevent-')).toBe('42');
    for (const bad of ['ftevent-', 'ftevent-4x', 'ftckpt-42', `ftevent-${'9'.repeat(20)}`]) expect(positionOf(bad, 'ftevent-')).toBeNull();
  });

  it('a succeeded job has its fine-tuned model, results file and trained tokens; a failed one its error; times in Unix seconds', () => {
    expect(fineTunedModelName(job)).toBe('ft:Qwen/Qwen2.5-Coder-0.5B-Instruct:support:tabc123');
    expect(fineTunedModelName({ ...job, suffix: null })).toBe('ft:Qwen/Qwen2.5-Coder-0.5B-Instruct::tabc123');
    const done = toJob(task({ status: 'COMPLETED', finishedAt: '2026-01-01T00:10:00.000Z' }), job, { estimatedTokens: 100 }, 0);
    expect(done).toMatchObject({
      id: 'ftjob-tabc123',
      status: 'succeeded',
      created_at: 1767225600,
      finished_at: 1767226200,
      fine_tuned_model: fineTunedModelName(job),
      result_files: ['file-ftresult-tabc123'],
      trained_tokens: 200,
      error: null,
      hyperparameters: { n_epochs: 2, batch_size: config.batchSize, learning_rate_multiplier: 1 },
    });
    const failed = toJob(
      task({ status: 'FAILED', error: { reason: 'exit', message: 'trainer exited with 1', exitCode: 1, signal: null } }),
      job,
      null,
      0,
    );
    expect(failed).toMatchObject({ status: 'failed', fine_tuned_model: null, result_files: [], trained_tokens: null });
    expect(failed.error).toEqual({ code: 'trainer_failed', message: 'trainer exited with 1', param: null });
  });

  it('estimated_finish follows the share of steps done since training started; null before a report or when not training', () => {
    const start = Date.parse('2026-01-01T00:00:00.000Z');
    const training = task({
      status: 'TRAINING',
      trainingAt: '2026-01-01T00:00:00.000Z',
      progress: { ...EMPTY_PROGRESS, step: 1, totalSteps: 4 },
    });
    expect(estimatedFinish(training, start + 100_000)).toBe((start + 400_000) / 1000);
    expect(estimatedFinish(task({ status: 'TRAINING', trainingAt: '2026-01-01T00:00:00.000Z' }), start + 100_000)).toBeNull();
    expect(estimatedFinish({ ...training, status: 'QUEUED' }, start + 100_000)).toBeNull();
  });

  it('the create body’s refusals name OpenAI’s parameter', () => {
    expect(createBodyProblem({ model: 'm', training_file: 'f' })).toBeNull();
    expect(createBodyProblem([])).toMatchObject({ param: null });
    expect(createBodyProblem({ training_file: 'f' })).toMatchObject({ param: 'model', code: 'missing_required_parameter' });
    expect(createBodyProblem({ model: 'm', training_file: 'f', learning_rate: 1 })).toMatchObject({
      param: 'learning_rate',
      code: 'unknown_parameter',
    });
    expect(createBodyProblem({ model: 'm', training_file: 'f', hyperparameters: { batch_size: 'big' } })).toMatchObject({
      param: 'hyperparameters.batch_size',
      message: expect.stringContaining('"auto" or a whole number from 1 to 256'),
    });
    expect(createBodyProblem({ model: 'm', training_file: 'f', seed: 1.5 })).toMatchObject({ param: 'seed' });
    const tooMany = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
    expect(createBodyProblem({ model: 'm', training_file: 'f', metadata: tooMany })).toMatchObject({ param: 'metadata' });
  });

  it('what is not built is refused naming the parameter; "auto" takes Trainyard’s defaults', () => {
    const body = (b: object) => createJobBody.parse({ model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct', training_file: 'file-1', ...b });
    expect(unsupportedProblem(body({ method: { type: 'dpo' } }))?.param).toBe('method.type');
    expect(unsupportedProblem(body({ integrations: [{ type: 'wandb' }] }))?.param).toBe('integrations');
    expect(unsupportedProblem(body({ integrations: [] }))).toBeNull();
    expect(
      unsupportedProblem(body({ hyperparameters: {}, method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 1 } } } }))
        ?.param,
    ).toBe('hyperparameters');

    const defaults = createTaskInput.shape.config.parse(undefined);
    const auto = createTaskInputOf(
      body({ hyperparameters: { n_epochs: 'auto', batch_size: 'auto', learning_rate_multiplier: 'auto' } }),
      '/d/f.jsonl',
      undefined,
    );
    expect(auto.ok && auto.value.config).toEqual(defaults);
    const set = createTaskInputOf(
      body({
        suffix: 's',
        method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 4, learning_rate_multiplier: 0.5 } } },
      }),
      '/d/f.jsonl',
      'key-1',
    );
    expect(set.ok && set.value).toMatchObject({
      datasetPath: '/d/f.jsonl',
      name: 'Qwen2.5-Coder-0.5B-Instruct s',
      idempotencyKey: 'key-1',
      config: { epochs: 4, learningRate: BASE_LEARNING_RATE / 2 },
    });
    const badModel = createTaskInputOf(body({ model: 'a b' }), '/d/f.jsonl', undefined);
    expect(badModel.ok ? null : badModel.problem.param).toBe('model');
  });

  it('events: lifecycle messages and metrics from progress; a deletion is not shown', () => {
    const progress = event({
      type: 'ProgressRecorded',
      data: { epoch: 1, totalEpochs: 2, step: 3, totalSteps: 10, loss: 1.5, learningRate: 0.0002 },
    });
    expect(toEvent(progress, job)).toMatchObject({
      id: 'ftevent-42',
      created_at: 1767225660,
      type: 'metrics',
      message: 'Step 3/10: training loss=1.5',
      data: { step: 3, total_steps: 10, epoch: 1, total_epochs: 2, train_loss: 1.5, learning_rate: 0.0002 },
    });
    expect(
      toEvent(event({ type: 'TaskFailed', data: { reason: 'signal', message: 'killed', exitCode: null, signal: 'SIGKILL' } }), job),
    ).toMatchObject({
      level: 'error',
      type: 'message',
      data: { code: 'trainer_killed', signal: 'SIGKILL' },
    });
    expect(toEvent(event({ type: 'TaskDeleted', data: {} }), job)).toBeNull();
    expect(resultCsv([progress, event({ type: 'TaskCompleted', data: { exitCode: 0 } })])).toBe(
      'step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n3,1.5,,,\n',
    );
  });
});
