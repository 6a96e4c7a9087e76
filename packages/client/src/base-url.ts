// Where the service is, decided in one place for every request the client makes (tRPC, the
// dataset upload, the outputs download): the caller's url, else TRAINYARD_URL (Node), else the
// page's origin (a browser), else the local default.

export const DEFAULT_URL = 'http://127.0.0.1:8080';

/** The service's base URL (no trailing slash, no /trpc). */
export function serviceUrl(url?: string): string {
  const base =
    url ??
    (typeof process !== 'undefined' ? process.env?.TRAINYARD_URL : undefined) ??
    (globalThis as { location?: { origin: string } }).location?.origin ??
    DEFAULT_URL;
  return base.replace(/\/+$/, '');
}
