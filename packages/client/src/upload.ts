// Uploading a dataset file to the service (POST /api/finetune/upload-dataset, a multipart form):
// the answer's file_path is what tasks.create takes as datasetPath. Works in Node and browsers.
import { authHeaders } from './auth';
import { serviceUrl } from './base-url';

/** The service's upload route (services/server/src/upload.ts). */
export const UPLOAD_DATASET_PATH = '/api/finetune/upload-dataset';

export interface UploadedDataset {
  /** Where the service stored it: give it to tasks.create as datasetPath. */
  file_path: string;
  filename: string;
}

/** The service refused the upload (or could not be reached: status null). */
export class DatasetUploadError extends Error {
  override name = 'DatasetUploadError';
  constructor(
    message: string,
    readonly status: number | null,
    /** The form field the problem is about. */
    readonly field = 'file',
  ) {
    super(message);
  }
}

export interface UploadOptions {
  /** Base URL of the service; default the page's origin in a browser, else TRAINYARD_URL. */
  url?: string;
  user?: string;
  /** A bearer token (tokens mode). */
  token?: string;
  signal?: AbortSignal;
}

export async function uploadDataset(file: Blob, filename: string, opts: UploadOptions = {}): Promise<UploadedDataset> {
  const base = serviceUrl(opts.url);
  const form = new FormData();
  form.append('file', file, filename);
  let res: Response;
  try {
    res = await fetch(`${base}${UPLOAD_DATASET_PATH}`, {
      method: 'POST',
      body: form,
      headers: authHeaders(opts),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new DatasetUploadError(`could not upload ${filename}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, null);
  }
  const text = await res.text();
  let body: { file_path?: unknown; filename?: unknown; detail?: string; error?: { message?: string; field?: string } } | null = null;
  try {
    body = JSON.parse(text);
  } catch {
    // a refusal before the route (Host/Origin checks) answers plain text
  }
  if (res.ok && body && typeof body.file_path === 'string')
    return { file_path: body.file_path, filename: String(body.filename ?? filename) };
  throw new DatasetUploadError(
    body?.error?.message ?? body?.detail ?? (text.trim() || `HTTP ${res.status}`),
    res.status,
    body?.error?.field ?? 'file',
  );
}
