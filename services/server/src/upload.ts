// POST /api/finetune/upload-dataset: a multipart form with one file field `file` (.json or
// .jsonl), checked to be JSON (a .json file) or JSON lines (.jsonl) while it streams to a private
// file in the uploads folder (a datasets root). Answers { file_path, filename }; file_path is what
// tasks.create takes as datasetPath. A page of another site cannot post here: http.ts refuses a
// foreign Origin and Sec-Fetch-Site: cross-site for every method that may change state.
// POST /v1/files (openai/) receives its files through the same code (receiveDatasetUpload).
import { randomUUID } from 'node:crypto';
import { closeSync, fchmodSync, mkdirSync, chmodSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import Busboy from '@fastify/busboy';

export const UPLOAD_DATASET_PATH = '/api/finetune/upload-dataset';
const FIELD = 'file';
/**
 * A .json file is parsed whole, and a .jsonl line at a time: each must fit in memory. Larger
 * datasets are JSON lines (any number of lines, each up to this size), or placed in a datasets root.
 */
export const MAX_JSON_TEXT_BYTES = 64 * 1024 * 1024;

export type DatasetFormat = 'json' | 'jsonl';

/** The format a file name says, or null when it is neither .json nor .jsonl. */
export function datasetFormat(filename: string): DatasetFormat | null {
  const m = /\.(json|jsonl)$/i.exec(filename);
  return m ? (m[1]!.toLowerCase() as DatasetFormat) : null;
}

/** The file's own name, reduced to letters, digits, . _ - (at most 100 characters, extension kept). */
export function safeFileName(filename: string): string {
  const base = filename.split(/[\\/]/).pop() ?? '';
  const cleaned = base.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[.]+/, '');
  return cleaned.length > 100 ? cleaned.slice(cleaned.length - 100) : cleaned || 'dataset';
}

/**
 * Checks a dataset's bytes as they arrive: a .json file must be one JSON value, a .jsonl file one
 * JSON value per non-blank line; at least one record either way. `push` and `end` return an
 * error message, or null while all is well.
 */
export class DatasetValidator {
  private parts: Buffer[] = [];
  private held = 0;
  private line = 1;
  private records = 0;

  constructor(private readonly format: DatasetFormat) {}

  push(chunk: Buffer): string | null {
    if (this.format === 'json') return this.hold(chunk);
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const held = this.hold(chunk.subarray(start, nl));
      if (held) return held;
      const problem = this.endLine();
      if (problem) return problem;
      start = nl + 1;
    }
    return start < chunk.length ? this.hold(chunk.subarray(start)) : null;
  }

  end(): string | null {
    if (this.format === 'jsonl') {
      const problem = this.endLine();
      if (problem) return problem;
      return this.records ? null : 'the file has no records (JSON lines: one JSON value per line)';
    }
    const text = this.take();
    if (!text.trim()) return 'the file is empty';
    try {
      JSON.parse(text);
    } catch (err) {
      return `the file is not JSON: ${(err as Error).message}`;
    }
    return null;
  }

  private hold(bytes: Buffer): string | null {
    this.held += bytes.length;
    if (this.held > MAX_JSON_TEXT_BYTES)
      return this.format === 'json'
        ? `a .json dataset is limited to ${MAX_JSON_TEXT_BYTES / 1024 / 1024} MiB; upload larger ones as JSON lines (.jsonl)`
        : `line ${this.line} is longer than ${MAX_JSON_TEXT_BYTES / 1024 / 1024} MiB`;
    if (bytes.length) this.parts.push(Buffer.from(bytes));
    return null;
  }

  private take(): string {
    const text = Buffer.concat(this.parts).toString('utf8');
    this.parts = [];
    this.held = 0;
    return text;
  }

  private endLine(): string | null {
    const text = this.take();
    const at = this.line;
    this.line += 1;
    if (!text.trim()) return null;
    try {
      JSON.parse(text);
    } catch (err) {
      return `line ${at} is not JSON: ${(err as Error).message}`;
    }
    this.records += 1;
    return null;
  }
}

export interface UploadError {
  status: 400 | 405 | 413 | 415;
  message: string;
}

/** A file received whole, checked and stored in the uploads folder under a unique name. */
export interface StoredUpload {
  path: string;
  /** The name it was sent with, made safe (safeFileName). */
  filename: string;
  bytes: number;
}

function answer(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(JSON.stringify(body));
}

/** `detail` for Studio and any FastAPI-style client; `error` for the typed client (uploadDataset). */
function refuse(res: ServerResponse, e: UploadError): void {
  answer(res, e.status, { detail: e.message, field: FIELD, error: { message: e.message, field: FIELD } });
}

/** Handles the upload route (Host and Origin were checked by the caller). */
export function handleDatasetUpload(req: IncomingMessage, res: ServerResponse, opts: { uploadsDir: string; maxBytes: number }): void {
  if (req.method !== 'POST') {
    res.setHeader('allow', 'POST');
    return refuse(res, { status: 405, message: `${UPLOAD_DATASET_PATH} takes POST (multipart/form-data with a file field "${FIELD}")` });
  }
  receiveDatasetUpload(req, res, opts, {
    refuse: (e) => refuse(res, e),
    stored: (file) => answer(res, 201, { file_path: file.path, filename: file.filename }),
  });
}

/**
 * Reads a multipart form with one file field `file` (.json or .jsonl) and, when `fields` names
 * them, those text fields (each at most once), checking the file as it streams to a private file
 * in the uploads folder. Calls `done.stored` with the stored file and the fields, or
 * `done.refuse` once with why not (nothing stays on disk then). A declared body over the limit is
 * refused before it is read, and the connection closed.
 */
export function receiveDatasetUpload(
  req: IncomingMessage,
  res: ServerResponse,
  opts: { uploadsDir: string; maxBytes: number; fields?: readonly string[] },
  done: { refuse(e: UploadError): void; stored(file: StoredUpload, fields: Record<string, string>): void },
): void {
  const allowed = opts.fields ?? [];
  const only = allowed.length
    ? `send one file field "${FIELD}" and the fields ${allowed.map((f) => JSON.stringify(f)).join(', ')}, each once`
    : `send one file field "${FIELD}" and nothing else`;
  const type = req.headers['content-type'] ?? '';
  if (!/^multipart\/form-data\s*;/i.test(type))
    return done.refuse({
      status: 415,
      message: `send multipart/form-data with a file field "${FIELD}" (.json or .jsonl), not ${JSON.stringify(type || '(none)')}`,
    });
  const declared = Number(req.headers['content-length']);
  // A form adds a few hundred bytes of headers and boundaries around the file.
  if (Number.isFinite(declared) && declared > opts.maxBytes + 64 * 1024) {
    res.setHeader('connection', 'close');
    done.refuse({ status: 413, message: tooLarge(opts.maxBytes) });
    req.destroy();
    return;
  }

  let busboy: ReturnType<typeof Busboy>;
  try {
    busboy = Busboy({
      headers: req.headers as { 'content-type': string },
      limits: { files: 1, fields: allowed.length, parts: 1 + allowed.length, fileSize: opts.maxBytes, headerPairs: 20 },
    });
  } catch (err) {
    return done.refuse({ status: 400, message: `not a readable multipart form: ${(err as Error).message}` });
  }

  let failure: UploadError | null = null;
  let stored: StoredUpload | null = null;
  const fields: Record<string, string> = {};
  let tmp: string | null = null;
  let fd: number | null = null;
  const fail = (e: UploadError) => {
    failure ??= e;
  };
  const cleanUp = () => {
    if (fd !== null) closeSync(fd);
    fd = null;
    if (tmp) rmSync(tmp, { force: true });
    tmp = null;
  };

  busboy.on('field', (name: string, value: string) => {
    if (!allowed.includes(name) || name in fields) return fail({ status: 400, message: only });
    fields[name] = value;
  });
  // Settled when the file part has been read to its end (busboy may say 'finish' first).
  let fileRead: Promise<void> = Promise.resolve();
  busboy.on('file', (field, stream, filename) => {
    fileRead = new Promise<void>((resolve) => {
      stream.once('end', () => resolve());
      stream.once('close', () => resolve());
      stream.once('error', () => resolve());
    });
    const name = safeFileName(filename ?? '');
    const format = datasetFormat(name);
    if (field !== FIELD) fail({ status: 400, message: `the form's file field must be named "${FIELD}", not ${JSON.stringify(field)}` });
    else if (!format) fail({ status: 400, message: `${JSON.stringify(filename)} is not a .json or .jsonl file` });
    if (failure || !format) return void stream.resume();
    const validator = new DatasetValidator(format);
    let bytes = 0;
    try {
      mkdirSync(opts.uploadsDir, { recursive: true, mode: 0o700 });
      chmodSync(opts.uploadsDir, 0o700);
      tmp = join(opts.uploadsDir, `.upload-${randomUUID()}`);
      fd = openSync(tmp, 'wx', 0o600);
      fchmodSync(fd, 0o600);
    } catch (err) {
      fail({ status: 400, message: `cannot store the upload: ${(err as Error).message}` });
      return void stream.resume();
    }
    stream.on('data', (chunk: Buffer) => {
      if (failure || fd === null) return;
      const problem = validator.push(chunk);
      if (problem) return fail({ status: 400, message: `${name}: ${problem}` });
      for (let off = 0; off < chunk.length;) off += writeSync(fd, chunk, off, chunk.length - off);
      bytes += chunk.length;
    });
    stream.on('limit', () => fail({ status: 413, message: tooLarge(opts.maxBytes) }));
    stream.on('end', () => {
      if (failure || fd === null || !tmp) return;
      const problem = validator.end();
      if (problem) return fail({ status: 400, message: `${name}: ${problem}` });
      closeSync(fd);
      fd = null;
      const dest = join(opts.uploadsDir, storedUploadName(name));
      renameSync(tmp, dest);
      tmp = null;
      stored = { path: dest, filename: name, bytes };
    });
  });
  busboy.on('partsLimit', () => fail({ status: 400, message: only }));
  busboy.on('filesLimit', () => fail({ status: 400, message: only }));
  busboy.on('fieldsLimit', () => fail({ status: 400, message: only }));
  busboy.on('error', (err: unknown) => {
    fail({ status: 400, message: `not a readable multipart form: ${(err as Error).message}` });
    cleanUp();
    if (stored) rmSync((stored as StoredUpload).path, { force: true });
    stored = null;
    done.refuse(failure!);
  });
  busboy.on('finish', () => {
    void fileRead.then(() => {
      if (!failure && !stored) fail({ status: 400, message: `the form has no file field "${FIELD}"` });
      if (failure) {
        cleanUp();
        if (stored) rmSync((stored as StoredUpload).path, { force: true });
        return done.refuse(failure);
      }
      done.stored(stored!, fields);
    });
  });
  req.on('aborted', cleanUp);
  req.pipe(busboy);
}

function tooLarge(max: number): string {
  return `the file is larger than the upload limit of ${max} bytes (TRAINYARD_UPLOAD_MAX_BYTES); place larger datasets in a datasets root (TRAINYARD_DATASETS_ROOT)`;
}

const UPLOAD_PREFIX = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-/;

/** An upload is stored under a unique name: a random UUID before the name it was sent with. */
function storedUploadName(fileName: string): string {
  return `${randomUUID()}-${fileName}`;
}

/** The name a file was uploaded with, from the name it is stored under (other names as they are). */
export function uploadedFileName(storedName: string): string {
  return storedName.replace(UPLOAD_PREFIX, '');
}
