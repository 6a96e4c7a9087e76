// What a request must look like before any route sees it: protection against DNS rebinding
// (Host), cross-site requests from web pages (Origin, Sec-Fetch-Site) and form posts that tRPC
// would otherwise parse (Content-Type). Pure functions: http.ts applies them, specs call them.
//
// Why each check: a page on attacker.example whose name is re-pointed to 127.0.0.1 is same-origin
// with the service in the browser's eyes, but its requests still say `Host: attacker.example`.
// A page that only posts to the service (no rebinding) sends its own Origin, or
// `Sec-Fetch-Site: cross-site`, and can only send "simple" bodies without a preflight: a form
// (multipart/form-data, urlencoded) or text/plain, never application/json.
import { OPENAI_FILES_PATH } from './openai/objects';
import { UPLOAD_DATASET_PATH } from './upload';

/** The names a request may address the service by: `host:port`, or `host` for any port. */
export interface HostPolicy {
  /** Normalised `host:port` entries (IPv6 in brackets). */
  exact: ReadonlySet<string>;
  /** Normalised host names allowed on any port (configured without one). */
  anyPort: ReadonlySet<string>;
}

export interface Refusal {
  status: 403 | 415 | 421;
  message: string;
}

/** What a check needs of a request (Node's IncomingMessage has it). */
export interface RequestHead {
  method?: string | undefined;
  url?: string | undefined;
  headers: Record<string, string | string[] | undefined>;
}

const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]'] as const;
const WILDCARD_BINDS = new Set(['0.0.0.0', '::', '[::]']);
const HOST_SYNTAX = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?$/;

/**
 * A host name or `host:port` as the service compares it: lower case, IPv6 in brackets and
 * compressed, numeric IPv4 forms spelled out; null when it is not a host at all (userinfo,
 * paths, spaces: `evil@127.0.0.1` must not pass as 127.0.0.1).
 */
export function normaliseHost(value: string, defaultPort?: number): { host: string; port: number | null } | null {
  let v = value.trim();
  if (!v) return null;
  // A bare IPv6 address (as HOST may be given) gets its brackets.
  if (!v.startsWith('[') && (v.match(/:/g)?.length ?? 0) > 1) v = `[${v}]`;
  if (!HOST_SYNTAX.test(v)) return null;
  let url: URL;
  try {
    url = new URL(`http://${v}`);
  } catch {
    return null;
  }
  // URL drops port 80 as the default of http: keep it when it was written.
  const written = /:([0-9]{1,5})$/.exec(v.startsWith('[') ? v.slice(v.indexOf(']')) : v)?.[1];
  const port = written !== undefined ? Number(written) : (defaultPort ?? null);
  if (port !== null && (port < 1 || port > 65535)) return null;
  return { host: url.hostname, port };
}

/**
 * TRAINYARD_ALLOWED_HOSTS: comma-separated `host` or `host:port`. Returns the normalised entries
 * and the ones that are not host names (for a configuration error naming them).
 */
export function parseAllowedHosts(raw: string): { hosts: string[]; invalid: string[] } {
  const hosts: string[] = [];
  const invalid: string[] = [];
  for (const part of raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const h = normaliseHost(part);
    if (!h) invalid.push(part);
    else hosts.push(h.port === null ? h.host : `${h.host}:${h.port}`);
  }
  return { hosts, invalid };
}

/**
 * The names the service answers to: the loopback names on the port it listens on, the address
 * it is bound to (every local address when bound to all of them: an IP literal cannot be a
 * rebound name), and the configured names.
 */
export function hostPolicy(opts: {
  port: number;
  bindHost: string;
  allowedHosts: readonly string[];
  /** The machine's addresses, used when bindHost is 0.0.0.0 or ::. */
  localAddresses?: readonly string[];
}): HostPolicy {
  const exact = new Set<string>();
  const anyPort = new Set<string>();
  const add = (name: string) => {
    const h = normaliseHost(name);
    if (h) exact.add(`${h.host}:${opts.port}`);
  };
  for (const n of LOOPBACK_NAMES) add(n);
  if (WILDCARD_BINDS.has(opts.bindHost)) for (const a of opts.localAddresses ?? []) add(a);
  else add(opts.bindHost);
  for (const entry of opts.allowedHosts) {
    const h = normaliseHost(entry);
    if (!h) continue;
    if (h.port === null) anyPort.add(h.host);
    else exact.add(`${h.host}:${h.port}`);
  }
  return { exact, anyPort };
}

/** Whether `host` (a Host header, or an Origin's host with its port) is one the service answers to. */
export function isAllowedHost(policy: HostPolicy, value: string | undefined, defaultPort = 80): boolean {
  if (!value) return false;
  const h = normaliseHost(value, defaultPort);
  if (!h) return false;
  return policy.anyPort.has(h.host) || policy.exact.has(`${h.host}:${h.port}`);
}

/** An Origin header is acceptable when absent (CLI, curl, scripts) or naming an allowed host. */
export function isAllowedOrigin(policy: HostPolicy, origin: string | undefined): boolean {
  if (origin === undefined) return true;
  // `null`: sandboxed frames, file: pages, some redirects. Nothing legitimate sends it here.
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
  // URL keeps IPv6 hosts in brackets, as Host headers write them.
  return isAllowedHost(policy, `${url.hostname}:${port}`);
}

function one(headers: RequestHead['headers'], name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

const HOW_TO_ALLOW =
  'To reach the service under this name, add it to TRAINYARD_ALLOWED_HOSTS (comma-separated host or host:port) and restart the service.';

/** 421 unless the Host header names the service; checked on every route. */
function checkHost(policy: HostPolicy, req: RequestHead): Refusal | null {
  const host = one(req.headers, 'host');
  if (isAllowedHost(policy, host)) return null;
  return {
    status: 421,
    message:
      `Misdirected request: this Trainyard service does not answer to the host name ${JSON.stringify(host ?? '')} ` +
      `(a check against DNS rebinding; by default it answers to 127.0.0.1, localhost and [::1] on its port). ${HOW_TO_ALLOW}\n`,
  };
}

/**
 * 403 for a request a web page of another site made: a foreign or `null` Origin, or
 * `Sec-Fetch-Site: cross-site`. Requests without these headers (CLI, curl, the node client) pass.
 * Exported for routes outside tRPC that change state (uploads).
 */
export function checkOrigin(policy: HostPolicy, req: RequestHead): Refusal | null {
  const origin = one(req.headers, 'origin');
  if (!isAllowedOrigin(policy, origin))
    return {
      status: 403,
      message: `Forbidden: requests from the web origin ${JSON.stringify(origin)} are refused (only pages served by this service may call it). ${HOW_TO_ALLOW}\n`,
    };
  if (one(req.headers, 'sec-fetch-site')?.trim().toLowerCase() === 'cross-site')
    return {
      status: 403,
      message:
        'Forbidden: the browser marked this request as cross-site (Sec-Fetch-Site: cross-site); only pages served by this service may call it.\n',
    };
  return null;
}

/** 415 for a body that is not JSON: tRPC would otherwise hand a form post to a procedure. */
function checkJsonBody(req: RequestHead): Refusal | null {
  const type = one(req.headers, 'content-type');
  const media = type?.split(';', 1)[0]!.trim().toLowerCase();
  if (media === 'application/json') return null;
  return {
    status: 415,
    message: `Unsupported media type ${JSON.stringify(type ?? '(none)')}: the API takes JSON bodies only (content-type: application/json).\n`,
  };
}

/**
 * A REST request without a body passes (Studio posts cancel and switch-model with none: a form
 * always sends a content type); one with a body must say JSON, as on the typed API.
 */
function checkRestBody(req: RequestHead): Refusal | null {
  const length = one(req.headers, 'content-length');
  const bodiless =
    one(req.headers, 'content-type') === undefined &&
    one(req.headers, 'transfer-encoding') === undefined &&
    (length === undefined || length.trim() === '0');
  return bodiless ? null : checkJsonBody(req);
}

export const isApiPath = (url: string): boolean => url === '/trpc' || url.startsWith('/trpc/') || url.startsWith('/trpc?');
/** SAGE Studio's REST routes (studio/routes.ts) and OpenAI's fine-tuning API (openai/). */
const isRestPath = (url: string): boolean => /^\/(api|v1)([/?]|$)/.test(url);
/** The REST routes whose body is a multipart form (upload.ts checks that it is). */
const isUploadPath = (url: string): boolean => [UPLOAD_DATASET_PATH, OPENAI_FILES_PATH].includes(url.split('?', 1)[0]!);
const READS = new Set(['GET', 'HEAD']);

/**
 * Every check a request gets before routing: Host on all routes; Origin and Sec-Fetch-Site on the
 * APIs (their reads return data too) and on every method that may change state; a JSON body for
 * anything but a read on the APIs (none at all passes on the REST routes; the upload's is a
 * form). The panel's own GETs stay open to links from other sites (Sec-Fetch-Site: cross-site
 * on a navigation).
 */
export function guardRequest(policy: HostPolicy, req: RequestHead): Refusal | null {
  const url = req.url ?? '/';
  const method = (req.method ?? 'GET').toUpperCase();
  const trpc = isApiPath(url);
  const rest = isRestPath(url);
  const write = !READS.has(method);
  return (
    checkHost(policy, req) ??
    (trpc || rest || write ? checkOrigin(policy, req) : null) ??
    (trpc && write ? checkJsonBody(req) : null) ??
    (rest && write && !isUploadPath(url) ? checkRestBody(req) : null)
  );
}

/** Sent with every response: the panel may not be framed, sniffed or leak its address. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};
