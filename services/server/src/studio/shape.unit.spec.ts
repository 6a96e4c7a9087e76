// Studio's shapes as pure functions: the status words come from the domain's list, a task reads
// as Studio's panel needs it (numbers where it calls number methods), and Studio's create body
// becomes tasks.create's input with Studio's defaults and Studio's field names in errors.
import { describe, expect, it } from 'vitest';
import { TASK_STATUSES, type TaskRecord, type TaskStatus } from '@trainyard/domain';
import { parseStudioCreate, STUDIO_DEFAULTS, STUDIO_STATUSES, studioStatus, toStudioTask } from './shape';

/** The fields of a task record that the mapping reads. */
function task(over: Partial<Record<keyof TaskRecord, unknown>> = {}): TaskRecord {
  return {
    id: 't1',
    status: 'TRAINING',
    spec: {
      model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
      datasetPath: '/data/train.jsonl',
      config: {
        epochs: 3,
        batchSize: 1,
        gradientAccumulation: 16,
        learningRate: 5e-5,
        maxLength: 1024,
        load8bit: true,
        load4bit: false,
        loraRank: 8,
        loraAlpha: 16,
      },
    },
    progress: { percent: 40, epoch: 2, totalEpochs: 3, step: 6, totalSteps: 15, loss: 1.25 },
    createdAt: '2026-01-01T00:00:00.000Z',
    startedAt: '2026-01-01T00:00:01.000Z',
    finishedAt: null,
    error: null,
    ...over,
  } as unknown as TaskRecord;
}

describe('status words', () => {
  it("are Studio's, derived from the domain's list in its order", () => {
    expect(STUDIO_STATUSES).toEqual(['pending', 'queued', 'preparing', 'training', 'completed', 'failed', 'cancelled']);
    for (const s of TASK_STATUSES) expect(studioStatus(s)).toBe(s.toLowerCase());
  });
});

describe('toStudioTask', () => {
  it('maps a running task', () => {
    expect(toStudioTask(task(), '/out/t1', ['a', 'b'])).toEqual({
      task_id: 't1',
      model_name: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
      dataset_path: '/data/train.jsonl',
      output_dir: '/out/t1',
      status: 'training',
      progress: 40,
      current_epoch: 2,
      total_epochs: 3,
      loss: 1.25,
      created_at: '2026-01-01T00:00:00.000Z',
      started_at: '2026-01-01T00:00:01.000Z',
      completed_at: null,
      error_message: null,
      logs: ['a', 'b'],
      config: {
        num_epochs: 3,
        batch_size: 1,
        gradient_accumulation_steps: 16,
        learning_rate: 5e-5,
        max_length: 1024,
        load_in_8bit: true,
        load_in_4bit: false,
        lora_rank: 8,
        lora_alpha: 16,
      },
    });
  });

  it('gives numbers before the first report (loss 0, epoch 0, the configured epochs) and keeps progress within 0–100', () => {
    const queued = toStudioTask(
      task({
        status: 'QUEUED',
        startedAt: null,
        progress: { percent: 0, epoch: null, totalEpochs: null, step: null, totalSteps: null, loss: null },
      }),
      '/o',
      [],
    );
    expect(queued).toMatchObject({ status: 'queued', loss: 0, current_epoch: 0, total_epochs: 3, progress: 0, started_at: null });
    expect(toStudioTask(task({ progress: { percent: 140, epoch: 1, totalEpochs: 3, loss: Number.NaN } }), '/o', []).progress).toBe(100);
    expect(toStudioTask(task({ progress: { percent: 140, epoch: 1, totalEpochs: 3, loss: Number.NaN } }), '/o', []).loss).toBe(0);
    expect(toStudioTask(task({ progress: { percent: -3, epoch: 1, totalEpochs: 3, loss: 1 } }), '/o', []).progress).toBe(0);
  });

  it('has completed_at for an ended task only, error_message from its error, and the last 50 lines', () => {
    const failed = toStudioTask(
      task({
        status: 'FAILED',
        finishedAt: '2026-01-01T00:01:00.000Z',
        error: { reason: 'exit', message: 'boom', exitCode: 1, signal: null },
      }),
      '/o',
      Array.from({ length: 80 }, (_, i) => `line ${i + 1}`),
    );
    expect(failed).toMatchObject({ status: 'failed', completed_at: '2026-01-01T00:01:00.000Z', error_message: 'boom' });
    expect(failed.logs).toHaveLength(50);
    expect(failed.logs[0]).toBe('line 31');
    for (const status of ['COMPLETED', 'CANCELLED'] as TaskStatus[])
      expect(toStudioTask(task({ status, finishedAt: '2026-01-01T00:01:00.000Z' }), '/o', []).completed_at).not.toBeNull();
  });
});

describe('parseStudioCreate', () => {
  it("applies Studio's defaults when only model_name and dataset_file are sent", () => {
    const r = parseStudioCreate({ model_name: 'Qwen/Qwen2.5-Coder-1.5B-Instruct', dataset_file: '/d.jsonl' });
    expect(r.ok && r.value).toMatchObject({
      model: 'Qwen/Qwen2.5-Coder-1.5B-Instruct',
      datasetPath: '/d.jsonl',
      config: {
        epochs: STUDIO_DEFAULTS.num_epochs,
        batchSize: STUDIO_DEFAULTS.batch_size,
        gradientAccumulation: STUDIO_DEFAULTS.gradient_accumulation_steps,
        learningRate: STUDIO_DEFAULTS.learning_rate,
        maxLength: STUDIO_DEFAULTS.max_length,
        load8bit: STUDIO_DEFAULTS.load_in_8bit,
      },
    });
    expect(STUDIO_DEFAULTS).toEqual({
      num_epochs: 3,
      batch_size: 1,
      gradient_accumulation_steps: 16,
      learning_rate: 5e-5,
      max_length: 1024,
      load_in_8bit: true,
    });
  });

  it('takes every field Studio sends, and ignores fields it does not know (as FastAPI does)', () => {
    const r = parseStudioCreate({
      model_name: 'm',
      dataset_file: '/d.jsonl',
      num_epochs: 1,
      batch_size: 2,
      gradient_accumulation_steps: 4,
      learning_rate: 1e-4,
      max_length: 256,
      load_in_8bit: false,
      dataset_source: 'upload',
    });
    expect(r.ok && r.value.config).toMatchObject({
      epochs: 1,
      batchSize: 2,
      gradientAccumulation: 4,
      learningRate: 1e-4,
      maxLength: 256,
      load8bit: false,
    });
  });

  it.each([
    [{ dataset_file: '/d' }, 'model_name', /^model_name is required/],
    [{ model_name: 'm' }, 'dataset_file', /^dataset_file is required/],
    [{ model_name: 'm', dataset_file: '/d', num_epochs: 0 }, 'num_epochs', /^num_epochs must be at least 1$/],
    [{ model_name: 'm', dataset_file: '/d', batch_size: 1.5 }, 'batch_size', /^batch_size must be a whole number/],
    [{ model_name: 'm', dataset_file: '/d', max_length: 8 }, 'max_length', /^max_length must be at least 16/],
    [
      { model_name: 'm', dataset_file: '/d', gradient_accumulation_steps: 5000 },
      'gradient_accumulation_steps',
      /^gradient_accumulation_steps must be at most 1024/,
    ],
    [{ model_name: 'm', dataset_file: '/d', learning_rate: 0 }, 'learning_rate', /^learning_rate must be greater than 0/],
    [{ model_name: 'm', dataset_file: '/d', load_in_8bit: 'yes' }, 'load_in_8bit', /^load_in_8bit must be true or false/],
    [{ model_name: 'm', dataset_file: '../../etc/passwd' }, 'dataset_file', /^dataset_file must not contain \.\. segments/],
    [{ model_name: '', dataset_file: '/d' }, 'model_name', /^model_name must not be empty/],
  ])('%j is refused naming %s', (body, field, message) => {
    const r = parseStudioCreate(body);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.field).toBe(field);
      expect(r.message).toMatch(message);
    }
  });
});
