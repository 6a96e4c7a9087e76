// What a finished task leaves: its output folder and artifacts (full paths to copy, sizes), how
// to load the adapter, the output folder as a .tar.gz; a failed task's reason and last lines, and
// after an out-of-memory failure the settings that fit its GPU by the form's own estimate; and
// "clone" / "retry with changes", which fill the new-task form in.
import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { estimateMemoryGb, fittingSettings, oomRisk, type EstimateInput } from '@trainyard/catalogue';
import { downloadPath, downloadStudioOutputs, isTerminal, useTRPC, type StoredEvent, type Task } from '../api';
import { gb } from '../format';
import { fillForm } from '../prefill';
import { currentToken } from '../session';

type Entry = { path: string; kind: 'file' | 'folder' | 'missing'; bytes: number | null; files: number | null; partial: boolean };

/** 1536 → "1.5 KB". */
function sizeText(bytes: number): string {
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${bytes} bytes` : `${v.toFixed(1)} ${units[i]}`;
}

function entrySize(e: Entry): string {
  if (e.kind === 'missing' || e.bytes === null) return 'not there';
  const size = `${e.partial ? 'at least ' : ''}${sizeText(e.bytes)}`;
  return e.kind === 'folder' ? `${size} · ${e.files} file${e.files === 1 ? '' : 's'}` : size;
}

/** Copies `text`; says so for a moment. Falls back to a selected textarea where the clipboard API is refused. */
function CopyButton({ text, label }: { text: string; label: string }) {
  const [done, setDone] = useState<'copied' | 'failed' | null>(null);
  const copy = async () => {
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch {
      const area = document.createElement('textarea');
      area.value = text;
      area.setAttribute('readonly', '');
      area.className = 'copy-buffer';
      document.body.appendChild(area);
      area.select();
      ok = document.execCommand('copy');
      area.remove();
    }
    setDone(ok ? 'copied' : 'failed');
    setTimeout(() => setDone(null), 1500);
  };
  return (
    <button
      type="button"
      className="btn btn-small btn-ghost copy-btn"
      onClick={() => void copy()}
      aria-label={label}
      data-testid="copy-btn"
      data-copy={text}
    >
      {done === 'copied' ? 'Copied' : done === 'failed' ? 'Copy failed' : 'Copy'}
    </button>
  );
}

/** Clone (any task) and retry with changes (a task that did not complete). */
export function TaskActions({ task }: { task: Task }) {
  return (
    <div className="detail-actions" data-testid="task-actions">
      <span className="task-id" data-testid="task-id">
        id <code>{task.id}</code>
        <CopyButton text={task.id} label={`Copy the id of ${task.spec.name}`} />
      </span>
      <button
        type="button"
        className="btn btn-small"
        data-testid="clone-btn"
        onClick={() => fillForm({ kind: 'clone', task })}
        aria-label={`Clone ${task.spec.name} into the new-task form`}
      >
        Clone
      </button>
      {isTerminal(task.status) && task.status !== 'COMPLETED' ? (
        <button
          type="button"
          className="btn btn-small"
          data-testid="retry-btn"
          onClick={() => fillForm({ kind: 'retry', task })}
          aria-label={`Retry ${task.spec.name} with changes`}
        >
          Retry with changes
        </button>
      ) : null}
    </div>
  );
}

/** The output folder and artifacts, the loading snippet and the download of a finished task. */
export function TaskResults({ task }: { task: Task }) {
  const trpc = useTRPC();
  const outputs = useQuery(trpc.tasks.outputs.queryOptions({ id: task.id }, { enabled: isTerminal(task.status), staleTime: 30_000 }));
  if (!isTerminal(task.status) || (task.status !== 'COMPLETED' && !task.artifacts.length)) return null;
  const o = outputs.data;
  const adapter = task.artifacts[task.artifacts.length - 1] ?? o?.folder.path ?? null;
  return (
    <section className="panel results" data-testid="results" aria-label="Results">
      <div className="panel-head">
        <h3>Results</h3>
        {task.status === 'COMPLETED' ? <DownloadButton task={task} /> : null}
      </div>
      <div className="results-body">
        {outputs.error ? <div className="alert alert-error">Could not read the outputs: {outputs.error.message}</div> : null}
        {o ? (
          <ul className="paths">
            <PathRow label="Output folder" entry={o.folder} testId="output-folder" />
            {o.artifacts.map((a) => (
              <PathRow key={a.path} label="Artifact" entry={a} testId="artifact" />
            ))}
          </ul>
        ) : !outputs.error ? (
          <p className="muted small">Reading the output folder…</p>
        ) : null}
        {task.status === 'COMPLETED' && adapter ? <LoadSnippet model={task.spec.model} adapter={adapter} /> : null}
      </div>
    </section>
  );
}

function PathRow({ label, entry, testId }: { label: string; entry: Entry; testId: string }) {
  return (
    <li className="path-row" data-testid={testId} data-path={entry.path} data-kind={entry.kind} data-bytes={entry.bytes ?? ''}>
      <span className="path-label">{label}</span>
      <code className="path-text" title={entry.path}>
        {entry.path}
      </code>
      <span className="path-size muted small" data-testid="path-size">
        {entrySize(entry)}
      </span>
      <CopyButton text={entry.path} label={`Copy the path of the ${label.toLowerCase()}`} />
    </li>
  );
}

/** Python that loads the adapter on its base model (PEFT reads the base model's id from the adapter's config). */
function loadSnippet(model: string, adapter: string): string {
  return [
    'from peft import AutoPeftModelForCausalLM',
    'from transformers import AutoTokenizer',
    '',
    `model = AutoPeftModelForCausalLM.from_pretrained(${JSON.stringify(adapter)})`,
    `tokenizer = AutoTokenizer.from_pretrained(${JSON.stringify(model)})`,
  ].join('\n');
}

function LoadSnippet({ model, adapter }: { model: string; adapter: string }) {
  const code = loadSnippet(model, adapter);
  return (
    <div className="snippet" data-testid="load-snippet">
      <div className="snippet-head">
        <span className="small">Load the adapter (Python, with peft and transformers)</span>
        <CopyButton text={code} label="Copy the Python that loads the adapter" />
      </div>
      <pre tabIndex={0} aria-label="Python that loads the adapter">
        <code>{code}</code>
      </pre>
    </div>
  );
}

/**
 * The output folder as a .tar.gz. Without a token a link: the browser streams it to disk. With one
 * (tokens mode) the page must send it, so it is fetched and saved from memory.
 */
function DownloadButton({ task }: { task: Task }) {
  const [state, setState] = useState<{ busy: boolean; error: string | null }>({ busy: false, error: null });
  const label = `Download the output folder of ${task.spec.name} as .tar.gz`;
  if (!currentToken())
    return (
      <a className="btn btn-small btn-primary" href={downloadPath(task.id)} download data-testid="download-btn" aria-label={label}>
        Download .tar.gz
      </a>
    );
  const save = async () => {
    setState({ busy: true, error: null });
    try {
      const { blob, filename } = await downloadStudioOutputs(task.id);
      const url = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = filename;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      setState({ busy: false, error: null });
    } catch (err) {
      setState({ busy: false, error: (err as Error).message });
    }
  };
  return (
    <span className="download">
      {state.error ? (
        <span className="field-error small" role="alert">
          {state.error}
        </span>
      ) : null}
      <button
        type="button"
        className="btn btn-small btn-primary"
        onClick={() => void save()}
        disabled={state.busy}
        data-testid="download-btn"
        aria-label={label}
      >
        {state.busy ? 'Downloading…' : 'Download .tar.gz'}
      </button>
    </span>
  );
}

const OOM = /out of memory|OutOfMemoryError|CUDA error: out of memory|\bOOM\b/i;

type Assignment = Extract<StoredEvent, { type: 'TaskAssigned' }>;

/** The memory the task could use on its smallest device, in GB: its total less other programs', as the scheduler saw it. */
function roomGb(a: Assignment | null): number | null {
  if (!a) return null;
  const mb = a.data.grounds?.devices.length
    ? Math.min(...a.data.grounds.devices.map((d) => d.memoryMb - d.externalMemoryMb))
    : a.data.devices.length
      ? Math.min(...a.data.devices.map((d) => d.memoryMb))
      : 0;
  return mb > 0 ? Math.round((mb / 1024) * 10) / 10 : null;
}

/** A failed task: why, its last lines as they were, and after running out of memory what fits. */
export function FailureCard({ task, assigned }: { task: Task; assigned: Assignment | null }) {
  const e = task.error!;
  const [head, ...rest] = e.message.split('\n');
  const reason = (head ?? '').replace(/:?\s*last output:$/, '').replace(/^trainer /, 'The trainer ');
  const title = e.reason === 'timeout' ? 'Timed out' : e.reason === 'lost' ? 'Lost its device' : 'Failed';
  const oom = OOM.test(e.message);
  return (
    <div className="failure" data-testid="task-error" data-reason={e.reason} data-oom={oom}>
      <div className="failure-head">
        <strong>{title}:</strong> <span data-testid="failure-reason">{reason}</span>
      </div>
      {rest.length ? (
        <>
          <div className="muted small">Its last lines:</div>
          <pre className="failure-lines" data-testid="failure-lines" tabIndex={0} aria-label="The trainer's last lines">
            {rest.join('\n')}
          </pre>
        </>
      ) : null}
      {oom ? <OomAdvice task={task} room={roomGb(assigned)} /> : null}
    </div>
  );
}

function OomAdvice({ task, room }: { task: Task; room: number | null }) {
  const c = task.spec.config;
  const input: EstimateInput = {
    model: task.spec.model,
    maxLength: c.maxLength,
    batchSize: c.batchSize,
    loraRank: c.loraRank,
    load8bit: c.load8bit,
    load4bit: c.load4bit,
  };
  const { estimateGb } = estimateMemoryGb(input);
  if (room === null || estimateGb === null)
    return (
      <p className="oom-advice" data-testid="oom-advice">
        It ran out of GPU memory. Lower the batch size or the max length, or load the model in 4-bit.
      </p>
    );
  const fit = fittingSettings(input, room);
  if (!fit) {
    const risk = oomRisk(estimateGb, room, input);
    return (
      <p className="oom-advice" data-testid="oom-advice">
        It ran out of GPU memory (its GPU had {gb(room)} free when it started; the estimate was ≈ {gb(estimateGb)}).{' '}
        {risk.level === 'low'
          ? 'The estimate thought it fits: lower the batch size or the max length, or load the model in 4-bit.'
          : risk.message.slice(risk.message.indexOf('To use less'))}
      </p>
    );
  }
  // A smaller batch keeps the effective batch with more accumulation.
  const accumulation = Math.min(1024, Math.round((c.batchSize * c.gradientAccumulation) / fit.input.batchSize));
  const changes = {
    batchSize: fit.input.batchSize,
    maxLength: fit.input.maxLength,
    load4bit: fit.input.load4bit,
    load8bit: fit.input.load8bit,
    gradientAccumulation: accumulation,
  };
  const note = `${fit.changes.join(', ')}: ≈ ${gb(fit.estimateGb)} of ${gb(room)} free`;
  return (
    <div className="oom-advice" data-testid="oom-advice">
      <span>
        It ran out of GPU memory (its GPU had {gb(room)} free when it started). What fits, by the form’s estimate:{' '}
        <strong data-testid="oom-fit">{fit.changes.join(', ')}</strong> (≈ {gb(fit.estimateGb)}
        {fit.input.batchSize !== c.batchSize
          ? `; gradient accumulation ${c.gradientAccumulation} → ${accumulation} keeps the effective batch`
          : ''}
        ).
      </span>
      <button
        type="button"
        className="btn btn-small btn-primary"
        data-testid="oom-retry"
        onClick={() => fillForm({ kind: 'retry', task, changes, note })}
      >
        Retry with these settings
      </button>
    </div>
  );
}
