// The HTTP edge of a webhook delivery: one POST with node:http / node:https that connects to the
// address the address check approved (pinned through the request's `lookup`), so a name that
// resolves elsewhere between the check and the connection (DNS rebinding) is never asked again.
// The Host header and the TLS server name stay the URL's host name, so HTTPS certificates are
// still checked against the name.
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { isIP } from 'node:net';

/** An address the check approved, and its family (4 or 6). */
export interface PinnedAddress {
  address: string;
  family: 4 | 6;
}

export interface WebhookResponse {
  status: number;
  headers: IncomingHttpHeaders;
}

/** A timeout's error: named as fetch's was, so the attempt reads "no answer in … ms". */
function timeoutError(ms: number): Error {
  const err = new Error(`no answer in ${ms} ms`);
  err.name = 'TimeoutError';
  return err;
}

/** A `lookup` that answers every name with the pinned address (never asks DNS). */
function pinnedLookup(pinned: PinnedAddress): LookupFunction {
  return ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (options?.all) callback(null, [{ address: pinned.address, family: pinned.family }]);
    else callback(null, pinned.address, pinned.family);
  }) as LookupFunction;
}

/**
 * POST `body` to `url`: redirects are not followed (a 3xx is the answer), the response body is
 * discarded, the whole attempt is limited to `timeoutMs`. With `pinned`, the connection goes to
 * that address whatever the host name resolves to now; without it (admins' webhooks) the name is
 * resolved as usual.
 */
export function postWebhook(
  url: string,
  headers: Record<string, string>,
  body: string,
  timeoutMs: number,
  pinned: PinnedAddress | null,
): Promise<WebhookResponse> {
  const u = new URL(url);
  const https = u.protocol === 'https:';
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const send = https ? httpsRequest : httpRequest;
  return new Promise<WebhookResponse>((resolve, reject) => {
    const req = send(
      {
        protocol: u.protocol,
        hostname: host,
        port: u.port || undefined,
        path: `${u.pathname}${u.search}`,
        method: 'POST',
        headers: { ...headers, host: u.host, 'content-length': String(Buffer.byteLength(body)) },
        agent: false,
        ...(pinned ? { lookup: pinnedLookup(pinned) } : {}),
        ...(https && !isIP(host) ? { servername: host } : {}),
      },
      (res) => {
        clearTimeout(timer);
        res.resume();
        res.on('error', () => {});
        resolve({ status: res.statusCode ?? 0, headers: res.headers });
      },
    );
    const timer = setTimeout(() => req.destroy(timeoutError(timeoutMs)), timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(body);
  });
}
