// The new-task form. Before anything is committed it shows the memory estimate, computed here
// with the estimate the server warns with (@trainyard/catalogue) against the GPU info, and
// where the task will run (free devices or behind the queue). Its Resources group asks for GPUs,
// memory per GPU and sharing (sent as `resources`). After submitting it shows the server's
// warnings; the server's field errors appear under their fields.
import { useMutation } from '@tanstack/react-query';
import { useEffect, useMemo, useRef, useState, type FormEvent } from 'react';
import {
  estimateMemoryGb,
  limitProblem,
  MODELS,
  oomRisk,
  DEFAULT_PRESET,
  PRESET_NAMES,
  presetHint,
  PRESETS,
  parseSweep,
  recommendedModels,
  SweepGridError,
  sweepPoints,
  sweepPointText,
  TRAINING_LIMITS,
  type EstimateInput,
  type LimitedField,
  type PresetName,
} from '@trainyard/catalogue';
import {
  errorInfo,
  uploadStudioDataset,
  useTRPC,
  type CreateInput,
  type CreateResult,
  type GpuInfo,
  type QueueView,
  type Task,
} from '../api';
import { usePrefill, type Prefill } from '../prefill';
import { gb, modelShort, STATUS_LABEL } from '../format';
import { Card, Field } from './ui';

const OTHER = '__other__';

interface FormState {
  modelChoice: string;
  customModel: string;
  datasetPath: string;
  name: string;
  preset: PresetName | 'custom';
  batchSize: string;
  gradientAccumulation: string;
  maxLength: string;
  epochs: string;
  learningRate: string;
  loraRank: string;
  loraAlpha: string;
  load8bit: boolean;
  load4bit: boolean;
  timeoutHours: string;
  simulate: string;
  gpus: string;
  gpuMemoryGb: string;
  shared: boolean;
}

/** The preset's fields as the form holds them. */
function presetFields(
  p: PresetName,
): Pick<FormState, 'preset' | 'batchSize' | 'gradientAccumulation' | 'maxLength' | 'load8bit' | 'load4bit'> {
  const c = PRESETS[p].config;
  return {
    preset: p,
    batchSize: String(c.batchSize),
    gradientAccumulation: String(c.gradientAccumulation),
    maxLength: String(c.maxLength),
    load8bit: c.load8bit,
    load4bit: false,
  };
}

const INITIAL: FormState = {
  // The smallest model until the GPU is known.
  modelChoice: MODELS[MODELS.length - 1]!,
  customModel: '',
  datasetPath: '',
  name: '',
  ...presetFields(DEFAULT_PRESET),
  epochs: '3',
  learningRate: '0.0002',
  loraRank: '8',
  loraAlpha: '16',
  timeoutHours: '6',
  simulate: '',
  gpus: '1',
  gpuMemoryGb: '',
  shared: false,
};

/** A task's settings as the form holds them, with `changes` made (clone, retry with changes). */
function fieldsFromTask(task: Task, changes: Prefill['changes'] = {}, kind: Prefill['kind']): FormState {
  const c = { ...task.spec.config, ...changes };
  const r = task.spec.resources;
  const known = (MODELS as readonly string[]).includes(task.spec.model);
  const preset =
    PRESET_NAMES.find((p) => {
      const pc = PRESETS[p].config;
      return (
        pc.batchSize === c.batchSize &&
        pc.gradientAccumulation === c.gradientAccumulation &&
        pc.maxLength === c.maxLength &&
        pc.load8bit === c.load8bit &&
        !c.load4bit
      );
    }) ?? 'custom';
  return {
    modelChoice: known ? task.spec.model : OTHER,
    customModel: known ? '' : task.spec.model,
    datasetPath: task.spec.datasetPath,
    name: `${task.spec.name} (${kind === 'clone' ? 'copy' : 'retry'})`.slice(0, 120),
    preset,
    batchSize: String(c.batchSize),
    gradientAccumulation: String(c.gradientAccumulation),
    maxLength: String(c.maxLength),
    load8bit: c.load8bit,
    load4bit: c.load4bit,
    epochs: String(c.epochs),
    learningRate: String(c.learningRate),
    loraRank: String(c.loraRank),
    loraAlpha: String(c.loraAlpha),
    timeoutHours: String(Math.round((task.spec.timeoutMs / 3_600_000) * 1000) / 1000),
    simulate: c.simulate ? JSON.stringify(c.simulate) : '',
    gpus: String(r.gpus),
    gpuMemoryGb: r.memorySource === 'given' && r.memoryMb !== null ? String(Math.round((r.memoryMb / 1024) * 10) / 10) : '',
    shared: r.shared,
  };
}

type Errors = Record<string, string[]>;

/** Server error keys → the field that shows them (unknown keys go to the form-level box). */
function fieldFor(key: string): string | null {
  if (key.startsWith('config.simulate')) return 'config.simulate';
  const known = [
    'model',
    'datasetPath',
    'name',
    'timeoutMs',
    'config.batchSize',
    'config.gradientAccumulation',
    'config.maxLength',
    'config.epochs',
    'config.learningRate',
    'config.loraRank',
    'config.loraAlpha',
    'config.load8bit',
    'config.load4bit',
    'resources.gpus',
    'resources.gpuMemoryGb',
    'resources.shared',
  ];
  return known.includes(key) ? key : null;
}
/** Form field → the key of its errors. */
const ERROR_KEY: Partial<Record<keyof FormState, string>> = {
  modelChoice: 'model',
  customModel: 'model',
  datasetPath: 'datasetPath',
  name: 'name',
  batchSize: 'config.batchSize',
  gradientAccumulation: 'config.gradientAccumulation',
  maxLength: 'config.maxLength',
  epochs: 'config.epochs',
  learningRate: 'config.learningRate',
  loraRank: 'config.loraRank',
  loraAlpha: 'config.loraAlpha',
  timeoutHours: 'timeoutMs',
  simulate: 'config.simulate',
  gpus: 'resources.gpus',
  gpuMemoryGb: 'resources.gpuMemoryGb',
  shared: 'resources.shared',
};
const ADVANCED_FIELDS = new Set([
  'config.epochs',
  'config.learningRate',
  'config.loraRank',
  'config.loraAlpha',
  'config.load8bit',
  'config.load4bit',
  'timeoutMs',
  'config.simulate',
]);

function num(v: string): number | null {
  if (v.trim() === '') return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

export function NewTaskForm({
  gpu,
  queue,
  onCreated,
}: {
  gpu: GpuInfo | undefined;
  queue: QueueView | undefined;
  onCreated?: (r: CreateResult) => void;
}) {
  const trpc = useTRPC();
  const [f, setF] = useState<FormState>(INITIAL);
  const [modelTouched, setModelTouched] = useState(false);
  const [errors, setErrors] = useState<Errors>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [advancedOpen, setAdvancedOpen] = useState(false);
  const [result, setResult] = useState<CreateResult | null>(null);
  /** The file being uploaded, or the one uploaded (its stored path is in datasetPath). */
  const [upload, setUpload] = useState<{ name: string; state: 'uploading' | 'done' } | null>(null);
  /** The task the form was filled in from (clone, retry with changes), until the next submission. */
  const [filledFrom, setFilledFrom] = useState<Prefill | null>(null);
  /** A sweep's grid ('learningRate=1e-4,2e-4 loraRank=8,16'): every combination a task, all sent in one tasks.createMany call. */
  const [sweep, setSweep] = useState('');
  const [sweepResult, setSweepResult] = useState<SweepCreated | null>(null);
  const prefill = usePrefill();
  /** After a refused submission, the first field in error takes the focus. */
  const focusError = useRef(false);
  useEffect(() => {
    if (!focusError.current) return;
    focusError.current = false;
    card.current?.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus();
  }, [errors]);
  const card = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!prefill) return;
    const next = fieldsFromTask(prefill.task, prefill.changes, prefill.kind);
    setF(next);
    setModelTouched(true);
    setErrors({});
    setFormError(null);
    setResult(null);
    setUpload(null);
    setFilledFrom(prefill);
    const plain = (k: keyof FormState) => next[k] === INITIAL[k];
    if (!(['epochs', 'learningRate', 'loraRank', 'loraAlpha', 'timeoutHours', 'simulate'] as const).every(plain) || next.load4bit)
      setAdvancedOpen(true);
    card.current?.scrollIntoView({ block: 'start' });
    document.getElementById('f-name')?.focus({ preventScroll: true });
  }, [prefill]);

  // What a task can have: each GPU's memory less what other programs hold on it.
  const largestGb = gpu?.available && gpu.devices.length ? Math.max(...gpu.devices.map(freeGb)) : null;
  const recommended = useMemo(() => (largestGb === null ? [] : recommendedModels(largestGb)), [largestGb]);

  // Pick the recommended model once the GPU is known, unless the user already chose one.
  useEffect(() => {
    if (!modelTouched && recommended[0]) setF((s) => ({ ...s, modelChoice: recommended[0]! }));
  }, [recommended, modelTouched]);

  const model = f.modelChoice === OTHER ? f.customModel.trim() : f.modelChoice;
  /** Editing a field clears the error shown under it. */
  const clearError = (key: keyof FormState) => {
    const errorKey = ERROR_KEY[key];
    if (errorKey && errors[errorKey]) setErrors(({ [errorKey]: _, ...rest }) => rest);
  };
  const setQuant = (bits: 8 | 4, on: boolean) => {
    if (errors['config.load8bit'] || errors['config.load4bit'])
      setErrors(({ 'config.load8bit': _a, 'config.load4bit': _b, ...rest }) => rest);
    setF((s) =>
      bits === 8
        ? { ...s, load8bit: on, load4bit: on ? false : s.load4bit, preset: 'custom' }
        : { ...s, load4bit: on, load8bit: on ? false : s.load8bit, preset: 'custom' },
    );
  };
  const set = <K extends keyof FormState>(key: K, value: FormState[K]) => {
    clearError(key);
    setF((s) => ({ ...s, [key]: value }));
  };
  const setPresetField = (key: 'batchSize' | 'gradientAccumulation' | 'maxLength', value: string) => {
    clearError(key);
    setF((s) => ({ ...s, [key]: value, preset: 'custom' }));
  };
  const applyPreset = (p: PresetName) => setF((s) => ({ ...s, ...presetFields(p) }));

  const create = useMutation(
    trpc.tasks.create.mutationOptions({
      onSuccess(r) {
        setResult(r);
        setFilledFrom(null);
        setErrors({});
        setFormError(null);
        setF((s) => ({ ...s, name: '' }));
        onCreated?.(r);
      },
      onError: (err) => showServerError(err),
    }),
  );

  /** The server refused a submission: its field errors under their fields (a sweep's name the task they belong to), the rest above the button. */
  function showServerError(err: Parameters<typeof errorInfo>[0], inSweep?: { points: string[] }) {
    const info = errorInfo(err);
    setResult(null);
    setSweepResult(null);
    if (info.fieldErrors) {
      const mine: Errors = {};
      const rest: string[] = [];
      for (const [key, v] of Object.entries(info.fieldErrors)) {
        // A sweep's errors name the task: tasks.3.config.loraRank is config.loraRank of the fourth combination.
        const item = inSweep ? /^tasks\.(\d+)\.(.+)$/.exec(key) : null;
        const k = item ? item[2]! : key;
        const messages = item ? v.map((m) => `Sweep task ${Number(item[1]) + 1} (${inSweep!.points[Number(item[1])] ?? ''}): ${m}`) : v;
        const field = fieldFor(k);
        if (field) (mine[field] ??= []).push(...messages);
        else rest.push(`${key}: ${v.join('; ')}`);
      }
      focusError.current = true;
      setErrors(mine);
      setFormError(rest.length ? rest.join('\n') : null);
      if (Object.keys(mine).some((k) => ADVANCED_FIELDS.has(k))) setAdvancedOpen(true);
    } else {
      setErrors({});
      setFormError(
        info.code === 'NETWORK_ERROR' || info.httpStatus === null
          ? `Could not reach the server (${info.message}). Nothing was submitted; try again when it is back.`
          : info.message,
      );
    }
  }

  const createMany = useMutation(
    trpc.tasks.createMany.mutationOptions({
      onSuccess(r) {
        setSweepResult(r);
        setResult(null);
        setFilledFrom(null);
        setErrors({});
        setFormError(null);
        setF((s) => ({ ...s, name: '' }));
      },
    }),
  );

  /** A file picked here is uploaded at once; the path the server stored it at fills the field. */
  async function uploadFile(file: File | undefined) {
    if (!file) return;
    clearError('datasetPath');
    setUpload({ name: file.name, state: 'uploading' });
    try {
      const stored = await uploadStudioDataset(file);
      setF((s) => ({ ...s, datasetPath: stored.file_path }));
      setUpload({ name: file.name, state: 'done' });
    } catch (err) {
      setUpload(null);
      setErrors((es) => ({ ...es, datasetPath: [(err as Error).message] }));
    }
  }

  function submit(e: FormEvent) {
    e.preventDefault();
    const local: Errors = {};
    const need = (key: string, label: string, v: string) => {
      const n = num(v);
      const field = key.replace(/^config\./, '');
      const problem = field in TRAINING_LIMITS ? limitProblem(field as LimitedField, n) : null;
      if (n === null) local[key] = [`${label} must be a number`];
      else if (problem) local[key] = [problem];
      return n ?? 0;
    };
    if (!model) local.model = ['Choose a model or enter a model id'];
    if (!f.datasetPath.trim()) local.datasetPath = ['Upload a dataset file, or enter the path of one in the server’s datasets folders'];
    const config: NonNullable<CreateInput['config']> = {
      batchSize: need('config.batchSize', 'Batch size', f.batchSize),
      gradientAccumulation: need('config.gradientAccumulation', 'Gradient accumulation', f.gradientAccumulation),
      maxLength: need('config.maxLength', 'Max length', f.maxLength),
      epochs: need('config.epochs', 'Epochs', f.epochs),
      learningRate: need('config.learningRate', 'Learning rate', f.learningRate),
      loraRank: need('config.loraRank', 'LoRA rank', f.loraRank),
      loraAlpha: need('config.loraAlpha', 'LoRA alpha', f.loraAlpha),
      load8bit: f.load8bit,
      load4bit: f.load4bit,
    };
    if (f.simulate.trim()) {
      try {
        config.simulate = JSON.parse(f.simulate) as NonNullable<typeof config.simulate>;
      } catch (err) {
        local['config.simulate'] = [`Not valid JSON: ${(err as Error).message}`];
      }
    }
    const hours = num(f.timeoutHours);
    if (f.timeoutHours.trim() && hours === null) local.timeoutMs = ['Timeout must be a number of hours'];
    let axes: ReturnType<typeof parseSweep> | null = null;
    if (sweep.trim()) {
      try {
        axes = parseSweep(sweep);
      } catch (err) {
        if (!(err instanceof SweepGridError)) throw err;
        local.sweep = [err.message];
      }
    }
    const gpus = need('resources.gpus', 'GPUs', f.gpus);
    const memoryGb = num(f.gpuMemoryGb);
    if (f.gpuMemoryGb.trim() && memoryGb === null) local['resources.gpuMemoryGb'] = ['Memory must be a number of GB'];
    if (Object.keys(local).length) {
      focusError.current = true;
      setErrors(local);
      setFormError(null);
      if (Object.keys(local).some((k) => ADVANCED_FIELDS.has(k) || k === 'sweep')) setAdvancedOpen(true);
      return;
    }
    const input: CreateInput = {
      model,
      datasetPath: f.datasetPath.trim(),
      config,
      ...(f.name.trim() ? { name: f.name.trim() } : {}),
      ...(hours !== null ? { timeoutMs: Math.round(hours * 3_600_000) } : {}),
      resources: { gpus, shared: f.shared, ...(memoryGb !== null ? { gpuMemoryGb: memoryGb } : {}) },
    };
    if (axes) {
      const points = sweepPoints(axes);
      const texts = points.map(sweepPointText);
      const tasks = points.map((p, i) => ({
        ...input,
        config: { ...config, ...p } as typeof config,
        ...(input.name ? { name: `${input.name} ${texts[i]}` } : {}),
      }));
      createMany.mutate({ tasks }, { onError: (err) => showServerError(err, { points: texts }) });
      return;
    }
    create.mutate(input);
  }
  /** How many tasks the grid makes (null: no grid, or one that cannot be read yet). */
  const sweepCount = (() => {
    if (!sweep.trim()) return null;
    try {
      return sweepPoints(parseSweep(sweep)).length;
    } catch {
      return null;
    }
  })();
  const pending = create.isPending || createMany.isPending;

  // Only settings the server would take are estimated: batch 0 needs no less memory than batch 1.
  const valid = (field: LimitedField, v: string) => limitProblem(field, num(v)) === null;
  const estimateInput: EstimateInput | null =
    model && valid('batchSize', f.batchSize) && valid('maxLength', f.maxLength) && valid('loraRank', f.loraRank)
      ? {
          model,
          batchSize: num(f.batchSize)!,
          maxLength: num(f.maxLength)!,
          loraRank: num(f.loraRank)!,
          load8bit: f.load8bit,
          load4bit: f.load4bit,
        }
      : null;

  const e = (key: string) => errors[key];
  const estimateGb = estimateInput ? estimateMemoryGb(estimateInput).estimateGb : null;
  const effectiveBatch = (num(f.batchSize) ?? 0) * (num(f.gradientAccumulation) ?? 0);

  return (
    <div ref={card} className="scroll-target">
      <Card title="New fine-tuning task" testId="new-task-card">
        <form className="task-form" onSubmit={submit} noValidate data-testid="new-task-form">
          {filledFrom ? (
            <div className="alert alert-info prefill-note" data-testid="prefill-note" data-kind={filledFrom.kind} role="status">
              <span>
                Filled in from <strong>{filledFrom.task.spec.name}</strong> ({filledFrom.kind === 'clone' ? 'a copy' : 'a retry'} of task{' '}
                <span className="mono">{filledFrom.task.id}</span>){filledFrom.note ? `: ${filledFrom.note}` : ''}. Change what you need,
                then submit.
              </span>
              <button type="button" className="btn-icon" onClick={() => setFilledFrom(null)} aria-label="Dismiss">
                ×
              </button>
            </div>
          ) : null}
          <Field
            label="Base model"
            htmlFor="f-model"
            errorKey="model"
            errors={e('model')}
            hint={
              recommended.length && largestGb !== null ? (
                <>
                  ★ recommended for {gb(largestGb)} of free GPU memory
                  {recommended[0] ? `; ${modelShort(recommended[0]).replace('-Instruct', '')} is the best fit` : ''}
                </>
              ) : gpu && !gpu.available ? (
                'No GPU detected: the smallest model is the safest choice.'
              ) : null
            }
          >
            <select
              id="f-model"
              data-testid="field-model"
              value={f.modelChoice}
              onChange={(ev) => {
                setModelTouched(true);
                set('modelChoice', ev.target.value);
              }}
            >
              {MODELS.map((m) => (
                <option key={m} value={m}>
                  {recommended.includes(m) ? '★ ' : ''}
                  {modelShort(m)}
                </option>
              ))}
              <option value={OTHER}>Other model…</option>
            </select>
            {f.modelChoice === OTHER ? (
              <input
                className="mt-6"
                data-testid="field-model-custom"
                placeholder="Hugging Face id, e.g. Qwen/Qwen2.5-Coder-1.5B"
                value={f.customModel}
                onChange={(ev) => set('customModel', ev.target.value)}
                aria-label="Model id"
                autoFocus
              />
            ) : null}
          </Field>

          <Field
            label="Dataset"
            htmlFor="f-dataset"
            errorKey="datasetPath"
            errors={e('datasetPath')}
            hint={
              upload?.state === 'uploading'
                ? `Uploading ${upload.name}…`
                : upload?.state === 'done'
                  ? `Uploaded ${upload.name}.`
                  : 'Upload a .json or .jsonl file, or give the path of a file or folder in the server’s datasets folders.'
            }
          >
            <input
              id="f-dataset"
              data-testid="field-dataset"
              placeholder="/data/datasets/my-code.jsonl"
              value={f.datasetPath}
              onChange={(ev) => {
                setUpload(null);
                set('datasetPath', ev.target.value);
              }}
              spellCheck={false}
            />
            <input
              className="mt-6"
              type="file"
              accept=".json,.jsonl"
              aria-label="Upload a dataset file"
              data-testid="field-dataset-file"
              disabled={upload?.state === 'uploading'}
              onChange={(ev) => {
                void uploadFile(ev.target.files?.[0]);
                ev.target.value = '';
              }}
            />
          </Field>

          <Field
            label="Name"
            htmlFor="f-name"
            errorKey="name"
            errors={e('name')}
            hint="Optional; defaults to “model on dataset · end of its id”."
          >
            <input
              id="f-name"
              data-testid="field-name"
              placeholder="e.g. coder-1.5b-docstrings"
              value={f.name}
              onChange={(ev) => set('name', ev.target.value)}
            />
          </Field>

          <div className="field">
            <span className="label">Preset</span>
            <div className="segmented" role="radiogroup" aria-label="Preset">
              {PRESET_NAMES.map((p) => (
                <button
                  type="button"
                  key={p}
                  role="radio"
                  aria-checked={f.preset === p}
                  className={f.preset === p ? 'active' : ''}
                  data-testid={`preset-${p}`}
                  onClick={() => applyPreset(p)}
                >
                  <span>{PRESETS[p].label}</span>
                  <small>{presetHint(p)}</small>
                </button>
              ))}
            </div>
            {f.preset === 'custom' ? <div className="field-hint">Custom settings</div> : null}
          </div>

          <div className="grid-3">
            <Field label="Batch size" htmlFor="f-batch" errorKey="config.batchSize" errors={e('config.batchSize')}>
              <input
                id="f-batch"
                data-testid="field-batch"
                type="number"
                min={TRAINING_LIMITS.batchSize.min}
                max={TRAINING_LIMITS.batchSize.max}
                step={1}
                inputMode="numeric"
                value={f.batchSize}
                onChange={(ev) => setPresetField('batchSize', ev.target.value)}
              />
            </Field>
            <Field label="Grad. accum." htmlFor="f-grad" errorKey="config.gradientAccumulation" errors={e('config.gradientAccumulation')}>
              <input
                id="f-grad"
                data-testid="field-grad"
                type="number"
                min={TRAINING_LIMITS.gradientAccumulation.min}
                max={TRAINING_LIMITS.gradientAccumulation.max}
                step={1}
                value={f.gradientAccumulation}
                onChange={(ev) => setPresetField('gradientAccumulation', ev.target.value)}
              />
            </Field>
            <Field label="Max length" htmlFor="f-maxlen" errorKey="config.maxLength" errors={e('config.maxLength')}>
              <input
                id="f-maxlen"
                data-testid="field-maxlen"
                type="number"
                min={TRAINING_LIMITS.maxLength.min}
                max={TRAINING_LIMITS.maxLength.max}
                step={64}
                value={f.maxLength}
                onChange={(ev) => setPresetField('maxLength', ev.target.value)}
              />
            </Field>
          </div>
          <div className="field-hint tight">
            Effective batch {effectiveBatch || '—'} · {f.load4bit ? '4-bit' : f.load8bit ? '8-bit' : '16-bit'} weights
          </div>

          <fieldset className="resources" data-testid="resources">
            <legend className="label">Resources</legend>
            <div className="grid-3">
              <Field label="GPUs" htmlFor="f-gpus" errorKey="resources.gpus" errors={e('resources.gpus')} hint="All start together">
                <input
                  id="f-gpus"
                  data-testid="field-gpus"
                  type="number"
                  min={1}
                  max={64}
                  step={1}
                  inputMode="numeric"
                  value={f.gpus}
                  onChange={(ev) => set('gpus', ev.target.value)}
                />
              </Field>
              <Field
                label="GB per GPU"
                htmlFor="f-gpu-memory"
                errorKey="resources.gpuMemoryGb"
                errors={e('resources.gpuMemoryGb')}
                hint={f.shared && estimateGb !== null ? `Empty: the estimate, ≈ ${gb(estimateGb)}` : 'Empty: a whole device'}
              >
                <input
                  id="f-gpu-memory"
                  data-testid="field-gpu-memory"
                  type="number"
                  min={0}
                  step="any"
                  placeholder={f.shared && estimateGb !== null ? String(estimateGb) : 'whole'}
                  value={f.gpuMemoryGb}
                  onChange={(ev) => set('gpuMemoryGb', ev.target.value)}
                />
              </Field>
              <div className={`field ${e('resources.shared') ? 'field-invalid' : ''}`}>
                <span className="label">Sharing</span>
                <label className="check">
                  <input
                    type="checkbox"
                    data-testid="field-shared"
                    checked={f.shared}
                    onChange={(ev) => set('shared', ev.target.checked)}
                  />
                  Shared
                </label>
                {e('resources.shared') ? (
                  <div className="field-error" role="alert" data-testid="field-error-resources.shared">
                    {e('resources.shared')!.join(' ')}
                  </div>
                ) : (
                  <div className="field-hint">Runs beside other shared tasks while their memory fits</div>
                )}
              </div>
            </div>
          </fieldset>

          <details className="advanced" open={advancedOpen} onToggle={(ev) => setAdvancedOpen((ev.target as HTMLDetailsElement).open)}>
            <summary data-testid="advanced-toggle">Advanced settings</summary>
            <div className="grid-2">
              <Field label="Epochs" htmlFor="f-epochs" errorKey="config.epochs" errors={e('config.epochs')} hint="1–100">
                <input
                  id="f-epochs"
                  data-testid="field-epochs"
                  type="number"
                  min={TRAINING_LIMITS.epochs.min}
                  max={TRAINING_LIMITS.epochs.max}
                  step={1}
                  value={f.epochs}
                  onChange={(ev) => set('epochs', ev.target.value)}
                />
              </Field>
              <Field
                label="Learning rate"
                htmlFor="f-lr"
                errorKey="config.learningRate"
                errors={e('config.learningRate')}
                hint="e.g. 0.0002 (0 < lr ≤ 1)"
              >
                <input
                  id="f-lr"
                  data-testid="field-lr"
                  type="number"
                  min={0}
                  max={1}
                  step="any"
                  value={f.learningRate}
                  onChange={(ev) => set('learningRate', ev.target.value)}
                />
              </Field>
              <Field
                label="LoRA rank"
                htmlFor="f-rank"
                errorKey="config.loraRank"
                errors={e('config.loraRank')}
                hint="1–1024; 8–64 is typical"
              >
                <input
                  id="f-rank"
                  data-testid="field-lora-rank"
                  type="number"
                  min={TRAINING_LIMITS.loraRank.min}
                  max={TRAINING_LIMITS.loraRank.max}
                  step={1}
                  value={f.loraRank}
                  onChange={(ev) => set('loraRank', ev.target.value)}
                />
              </Field>
              <Field
                label="LoRA alpha"
                htmlFor="f-alpha"
                errorKey="config.loraAlpha"
                errors={e('config.loraAlpha')}
                hint="usually 2 × rank"
              >
                <input
                  id="f-alpha"
                  data-testid="field-lora-alpha"
                  type="number"
                  min={TRAINING_LIMITS.loraAlpha.min}
                  max={TRAINING_LIMITS.loraAlpha.max}
                  step={1}
                  value={f.loraAlpha}
                  onChange={(ev) => set('loraAlpha', ev.target.value)}
                />
              </Field>
              <Field
                label="Timeout (hours)"
                htmlFor="f-timeout"
                errorKey="timeoutMs"
                errors={e('timeoutMs')}
                hint="The trainer is stopped after this long."
              >
                <input
                  id="f-timeout"
                  data-testid="field-timeout"
                  type="number"
                  min={0.01}
                  max={720}
                  step="any"
                  value={f.timeoutHours}
                  onChange={(ev) => set('timeoutHours', ev.target.value)}
                />
              </Field>
              <div className="field">
                <span className="label">Quantized loading</span>
                <label className="check">
                  <input type="checkbox" data-testid="field-8bit" checked={f.load8bit} onChange={(ev) => setQuant(8, ev.target.checked)} />
                  8-bit
                </label>
                <label className="check">
                  <input type="checkbox" data-testid="field-4bit" checked={f.load4bit} onChange={(ev) => setQuant(4, ev.target.checked)} />
                  4-bit
                </label>
                {e('config.load8bit') || e('config.load4bit') ? (
                  <div className="field-error" role="alert" data-testid="field-error-config.load4bit">
                    {[...(e('config.load8bit') ?? []), ...(e('config.load4bit') ?? [])].join(' ')}
                  </div>
                ) : null}
              </div>
            </div>
            <Field
              label="Simulated trainer (JSON)"
              htmlFor="f-sim"
              errorKey="config.simulate"
              errors={e('config.simulate')}
              hint={
                <>
                  Only for the simulated trainer, e.g. <code>{'{"steps":20,"stepMs":200}'}</code>
                </>
              }
            >
              <textarea
                id="f-sim"
                data-testid="field-simulate"
                rows={2}
                spellCheck={false}
                placeholder='{"steps": 20, "stepMs": 200}'
                value={f.simulate}
                onChange={(ev) => set('simulate', ev.target.value)}
              />
            </Field>
            <Field
              label="Sweep"
              htmlFor="f-sweep"
              errorKey="sweep"
              errors={e('sweep')}
              hint={
                <>
                  Optional: every combination becomes a task, all submitted together (all or none), e.g.{' '}
                  <code>learningRate=1e-4,2e-4 loraRank=8,16</code>
                  {sweepCount !== null ? ` · ${sweepCount} task${sweepCount === 1 ? '' : 's'}` : ''}
                </>
              }
            >
              <input
                id="f-sweep"
                data-testid="field-sweep"
                spellCheck={false}
                placeholder="learningRate=1e-4,2e-4 loraRank=8,16"
                value={sweep}
                onChange={(ev) => {
                  if (errors.sweep) setErrors(({ sweep: _, ...rest }) => rest);
                  setSweep(ev.target.value);
                }}
              />
            </Field>
          </details>

          <Estimate gpu={gpu} input={estimateInput} />
          <Placement queue={queue} gpus={num(f.gpus) ?? 1} />

          {formError ? (
            <div className="alert alert-error" role="alert" data-testid="form-error">
              {formError}
            </div>
          ) : null}

          <div className="form-actions">
            <button type="submit" className="btn btn-primary" disabled={pending || upload?.state === 'uploading'} data-testid="submit-task">
              {pending ? 'Submitting…' : sweepCount !== null ? `Submit ${sweepCount} tasks` : 'Submit task'}
            </button>
          </div>

          {result ? <SubmitResult r={result} onClose={() => setResult(null)} /> : null}
          {sweepResult ? <SweepResult r={sweepResult} onClose={() => setSweepResult(null)} /> : null}
        </form>
      </Card>
    </div>
  );
}

/** A GPU's memory a task can have: its total less what other programs hold. */
function freeGb(d: GpuInfo['devices'][number]): number {
  return Math.max(0, Math.round((d.memoryGb - Math.min(d.externalMemoryGb, d.memoryGb)) * 10) / 10);
}

/** The memory estimate against the smallest GPU's free memory, before submitting. */
function Estimate({ gpu, input }: { gpu: GpuInfo | undefined; input: EstimateInput | null }) {
  if (!input) return null;
  const { estimateGb, paramsB } = estimateMemoryGb(input);
  if (estimateGb === null || paramsB === null) {
    return (
      <div className="estimate estimate-info" data-testid="estimate" data-level="unknown">
        Cannot tell the size of <code>{input.model}</code> from its name, so its memory need is not estimated.
      </div>
    );
  }
  if (!gpu) {
    return (
      <div className="estimate estimate-info" data-testid="estimate" data-level="pending">
        Needs about <strong>{gb(estimateGb)}</strong> of GPU memory · checking the GPU…
      </div>
    );
  }
  if (!gpu.available || !gpu.devices.length) {
    return (
      <div className="estimate estimate-medium" data-testid="estimate" data-level="no-gpu">
        <div className="estimate-head">
          <strong>Needs about {gb(estimateGb)} of GPU memory</strong>
          <span className="pill pill-medium">No GPU</span>
        </div>
        <p>No GPU detected on the server: GPU trainers cannot run this task (the simulated trainer can).</p>
      </div>
    );
  }
  // Against the memory a task can have on the smallest GPU: its total less other programs'.
  const smallest = Math.min(...gpu.devices.map(freeGb));
  const held = gpu.devices.reduce((n, d) => Math.max(n, d.externalMemoryGb), 0);
  const risk = oomRisk(estimateGb, smallest, input);
  const ratio = Math.min(1, estimateGb / smallest);
  const label = risk.level === 'low' ? 'Should fit' : risk.level === 'medium' ? 'May run out of memory' : 'Likely out of memory';
  return (
    <div className={`estimate estimate-${risk.level}`} data-testid="estimate" data-level={risk.level}>
      <div className="estimate-head">
        <strong>
          ≈ {gb(estimateGb)} of {gb(smallest)} free
        </strong>
        <span className={`pill pill-${risk.level}`}>{label}</span>
      </div>
      {held > 0 ? (
        <div className="muted small" data-testid="estimate-held">
          Other programs hold {gb(held)} of the GPU: the estimate counts only what is left.
        </div>
      ) : null}
      <div className="estimate-track">
        <div className="estimate-fill" style={{ width: `${ratio * 100}%` }} />
        <div className="estimate-mark" style={{ left: '70%' }} title="70%" />
        <div className="estimate-mark" style={{ left: '90%' }} title="90%" />
      </div>
      {risk.level !== 'low' ? (
        <p data-testid="estimate-message" title={risk.message}>
          {advice(risk.message)}
        </p>
      ) : null}
    </div>
  );
}

/** The actionable half of oomRisk's message ("…: training will likely run out of memory. To use less, lower…"). */
function advice(message: string): string {
  const i = message.indexOf('To use less, ');
  if (i < 0) return message;
  const rest = message.slice(i + 'To use less, '.length);
  return `To fit: ${rest}`;
}

/** Where a task submitted now would go: on free devices, or behind the queue. */
function Placement({ queue, gpus }: { queue: QueueView | undefined; gpus: number }) {
  if (!queue) return null;
  const usable = queue.devices.filter((d) => d.present && !d.blockedReason);
  const free = usable.filter((d) => d.holders.length === 0 && (gpus === 1 || d.migProfile === null));
  const blocked = queue.devices.filter((d) => d.blockedReason);
  const n = (k: number, what: string) => `${k} ${what}${k === 1 ? '' : 's'}`;
  let text: string;
  if (queue.queuedCount === 0 && free.length >= gpus)
    text = `Starts right away: ${n(free.length, 'free device')} (${free.map((d) => d.id).join(', ')}).`;
  else if (queue.queuedCount === 0) text = `Waits for running tasks: ${n(gpus, 'device')} needed, ${free.length} free.`;
  else text = `Waits behind ${n(queue.queuedCount, 'queued task')} (a shorter task may start sooner, when it cannot delay them).`;
  return (
    <div className="placement" data-testid="placement">
      {text}
      {blocked.length ? <span className="placement-warn"> {n(blocked.length, 'device')} blocked by other programs on the GPU.</span> : null}
    </div>
  );
}

function SubmitResult({ r, onClose }: { r: CreateResult; onClose: () => void }) {
  return (
    <div className="submit-result" data-testid="submit-result" role="status">
      <div className="submit-result-head">
        <span>
          {r.created ? 'Submitted' : 'Already submitted'} <strong>{r.spec.name}</strong> · {STATUS_LABEL[r.status]}
        </span>
        <button type="button" className="btn-icon" onClick={onClose} aria-label="Dismiss">
          ×
        </button>
      </div>
      {r.warnings.length ? (
        <ul className="warnings" data-testid="server-warnings">
          {r.warnings.map((w, i) => (
            <li key={i} className={`warning warning-${w.level}`} data-code={w.code}>
              {w.message}
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}

type SweepCreated = { tasks: Task[]; warnings: CreateResult['warnings']; created: boolean };

/** The tasks a sweep created, in the order queued. */
function SweepResult({ r, onClose }: { r: SweepCreated; onClose: () => void }) {
  return (
    <div className="submit-result" data-testid="sweep-result" role="status">
      <div className="submit-result-head">
        <span>
          {r.created ? 'Submitted' : 'Already submitted'} a sweep of <strong>{r.tasks.length} tasks</strong>
        </span>
        <button type="button" className="btn-icon" onClick={onClose} aria-label="Dismiss">
          ×
        </button>
      </div>
      <ol className="sweep-tasks">
        {r.tasks.map((t) => (
          <li key={t.id} data-testid="sweep-task" data-status={t.status}>
            <strong>{t.spec.name}</strong> · {STATUS_LABEL[t.status]}
          </li>
        ))}
      </ol>
      {r.warnings.length ? (
        <ul className="warnings" data-testid="server-warnings">
          {r.warnings.map((w, i) => (
            <li key={i} className={`warning warning-${w.level}`} data-code={w.code}>
              {w.message}
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}
