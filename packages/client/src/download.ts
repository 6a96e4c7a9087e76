// A completed task's output folder as a .tar.gz, packed by the service as it streams
// (GET /api/finetune/tasks/<id>/download, services/server/src/studio/routes.ts): the body is read
// as it arrives, never held whole. Works in Node and browsers.
import { authHeaders } from './auth';
import { serviceUrl } from './base-url';

/** The service's download route for a task. */
export function downloadPath(taskId: string): string {
  return `/api/finetune/tasks/${encodeURIComponent(taskId)}/download`;
}

/** The service refused the download (status 400: not completed; 404: no such task or folder), or could not be reached (status null). */
export class DownloadError extends Error {
  override name = 'DownloadError';
  constructor(
    message: string,
    readonly status: number | null,
  ) {
    super(message);
  }
}

export interface DownloadOptions {
  /** Base URL of the service; default the page's origin in a browser, else TRAINYARD_URL. */
  url?: string;
  user?: string;
  /** A bearer token (tokens mode). */
  token?: string;
  signal?: AbortSignal;
}

export interface OutputsDownload {
  /** The .tar.gz as it arrives. */
  body: ReadableStream<Uint8Array>;
  /** The name the service gives it (`<task id>_finetuned_model.tar.gz`). */
  filename: string;
}

export async function downloadOutputs(taskId: string, opts: DownloadOptions = {}): Promise<OutputsDownload> {
  const base = serviceUrl(opts.url);
  let res: Response;
  try {
    res = await fetch(`${base}${downloadPath(taskId)}`, {
      headers: authHeaders(opts),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new DownloadError(
      `could not download the outputs of task ${taskId}: ${cause?.code ?? cause?.message ?? (err as Error).message}`,
      null,
    );
  }
  if (!res.ok || !res.body) {
    const text = await res.text().catch(() => '');
    let detail: string | null = null;
    try {
      const body = JSON.parse(text) as { detail?: unknown };
      if (typeof body.detail === 'string') detail = body.detail;
    } catch {
      // a refusal before the route (Host/Origin checks) answers plain text
    }
    throw new DownloadError(detail ?? (text.trim() || `HTTP ${res.status}`), res.status);
  }
  const disposition = res.headers.get('content-disposition') ?? '';
  const named = /filename="([^"/\\]+)"/.exec(disposition)?.[1];
  return { body: res.body, filename: named ?? `${taskId}.tar.gz` };
}
