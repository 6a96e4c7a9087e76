// DNS rebinding between the address check and the connection: a non-admin's delivery connects
// to the address that was checked, and the name is resolved once. A resolver injected into the
// edge answers a public address for the check and a loopback one if asked again; a real HTTP
// receiver on 127.0.0.1 stands in for "where the connection went".
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nonAdminTarget, type Resolver } from './address';
import { postWebhook } from './deliver';

interface Seen {
  host: string | undefined;
  body: string;
  path: string | undefined;
  event: string | undefined;
}

let server: Server;
let port = 0;
const seen: Seen[] = [];

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ host: req.headers.host, body, path: req.url, event: req.headers['x-trainyard-event'] as string | undefined });
      res.writeHead(202, { 'retry-after': '7' });
      res.end('ignored');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** Public for the first lookup, loopback for any later one (a rebinding name). */
function rebindingResolver(): { resolve: Resolver; calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    resolve: async (host) => {
      calls.push(host);
      return calls.length === 1 ? ['203.0.113.7'] : ['127.0.0.1'];
    },
  };
}

describe('webhook delivery pins the checked address', () => {
  it('given a name that rebinds after the check, when a non-admin target is checked, then it is resolved once and the public address it answered first is pinned', async () => {
    const r = rebindingResolver();
    const target = await nonAdminTarget(`http://rebind.example:${port}/hook`, r.resolve);
    expect(target).toEqual({ pinned: { address: '203.0.113.7', family: 4 } });
    expect(r.calls).toEqual(['rebind.example']);
  });

  it('given a name that resolves to loopback at the check, when checked, then it is refused and nothing is pinned', async () => {
    const target = await nonAdminTarget(`http://inner.example:${port}/hook`, async () => ['127.0.0.1']);
    expect(target).toHaveProperty('problem');
    expect((target as { problem: string }).problem).toMatch(/loopback/);
  });

  it('given a pinned address, when delivered to a name DNS cannot resolve, then the request reaches the pinned address with the name as Host, the body, headers and the response kept', async () => {
    seen.length = 0;
    const body = JSON.stringify({ type: 'task.completed', id: 'x' });
    const res = await postWebhook(
      `http://never-resolves.invalid:${port}/hook?q=1`,
      { 'content-type': 'application/json', 'x-trainyard-event': 'task.completed' },
      body,
      5000,
      { address: '127.0.0.1', family: 4 },
    );
    expect(res.status).toBe(202);
    expect(res.headers['retry-after']).toBe('7');
    expect(seen).toEqual([{ host: `never-resolves.invalid:${port}`, body, path: '/hook?q=1', event: 'task.completed' }]);
  });

  it('given the rebinding name, when checked and delivered, then the connection goes to the checked public address, never to the loopback receiver the second answer names', async () => {
    seen.length = 0;
    const r = rebindingResolver();
    const url = `http://rebind.example:${port}/hook`;
    const target = await nonAdminTarget(url, r.resolve);
    if (!('pinned' in target)) throw new Error(`expected a pinned target, got ${target.problem}`);
    // 203.0.113.7 (TEST-NET-3) answers nothing: the attempt fails, and the local receiver hears nothing.
    await expect(postWebhook(url, {}, '{}', 300, target.pinned)).rejects.toBeDefined();
    expect(r.calls).toHaveLength(1);
    expect(seen).toEqual([]);
  });

  it('given no pinned address (an admin webhook), when delivered to a literal address, then it is sent as before', async () => {
    seen.length = 0;
    const res = await postWebhook(`http://127.0.0.1:${port}/admin`, {}, 'x', 5000, null);
    expect(res.status).toBe(202);
    expect(seen).toEqual([{ host: `127.0.0.1:${port}`, body: 'x', path: '/admin', event: undefined }]);
  });
});
