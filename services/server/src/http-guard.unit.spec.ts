// The request checks against DNS rebinding and cross-site requests, as pure functions.
import { describe, expect, it } from 'vitest';
import {
  checkOrigin,
  guardRequest,
  hostPolicy,
  isAllowedHost,
  isAllowedOrigin,
  normaliseHost,
  parseAllowedHosts,
  type RequestHead,
} from './http-guard';

const local = hostPolicy({ port: 8080, bindHost: '127.0.0.1', allowedHosts: [] });
const req = (headers: Record<string, string>, method = 'GET', url = '/trpc/tasks.list'): RequestHead => ({ method, url, headers });

describe('host names', () => {
  it('normalises case, IPv6 and numeric IPv4, and keeps a written port 80', () => {
    expect(normaliseHost('LOCALHOST:8080')).toEqual({ host: 'localhost', port: 8080 });
    expect(normaliseHost('[0:0:0:0:0:0:0:1]:8080')).toEqual({ host: '[::1]', port: 8080 });
    expect(normaliseHost('::1')).toEqual({ host: '[::1]', port: null });
    expect(normaliseHost('2130706433:8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(normaliseHost('example.com:80')).toEqual({ host: 'example.com', port: 80 });
    expect(normaliseHost('example.com', 80)).toEqual({ host: 'example.com', port: 80 });
  });

  it('refuses what is not a host: userinfo, paths, spaces, bad ports', () => {
    for (const v of [
      '',
      ' ',
      'evil@127.0.0.1:8080',
      '127.0.0.1:8080/x',
      '127.0.0.1:8080#',
      'a b',
      'localhost:0',
      'localhost:65536',
      'localhost:',
      '[::1',
      'http://localhost',
    ])
      expect(normaliseHost(v), v).toBeNull();
  });

  it('answers to the loopback names on its own port only', () => {
    for (const h of ['127.0.0.1:8080', 'localhost:8080', 'LocalHost:8080', '[::1]:8080']) expect(isAllowedHost(local, h), h).toBe(true);
    for (const h of [
      undefined,
      '',
      '127.0.0.1:8081',
      'localhost',
      '127.0.0.1',
      'attacker.example:8080',
      'localhost.:8080',
      'evil@localhost:8080',
      '0.0.0.0:8080',
    ])
      expect(isAllowedHost(local, h), String(h)).toBe(false);
  });

  it('answers to the address it is bound to, and every local address when bound to all', () => {
    const lan = hostPolicy({ port: 9000, bindHost: '192.168.1.5', allowedHosts: [] });
    expect(isAllowedHost(lan, '192.168.1.5:9000')).toBe(true);
    expect(isAllowedHost(lan, '192.168.1.6:9000')).toBe(false);
    const all = hostPolicy({ port: 9000, bindHost: '0.0.0.0', allowedHosts: [], localAddresses: ['10.0.0.2', 'fe80::1'] });
    expect(isAllowedHost(all, '10.0.0.2:9000')).toBe(true);
    expect(isAllowedHost(all, '[fe80::1]:9000')).toBe(true);
    expect(isAllowedHost(all, '0.0.0.0:9000')).toBe(false);
    expect(isAllowedHost(all, 'myhost:9000')).toBe(false);
  });

  it('answers to configured names: host alone on any port, host:port on that port', () => {
    const { hosts, invalid } = parseAllowedHosts(' Trainyard.LAN , gpu-box:8443,,[::2]:1 ');
    expect(hosts).toEqual(['trainyard.lan', 'gpu-box:8443', '[::2]:1']);
    expect(invalid).toEqual([]);
    const p = hostPolicy({ port: 8080, bindHost: '127.0.0.1', allowedHosts: hosts });
    expect(isAllowedHost(p, 'trainyard.lan')).toBe(true);
    expect(isAllowedHost(p, 'trainyard.lan:3000')).toBe(true);
    expect(isAllowedHost(p, 'gpu-box:8443')).toBe(true);
    expect(isAllowedHost(p, 'gpu-box:8080')).toBe(false);
    expect(isAllowedHost(p, 'gpu-box')).toBe(false);
    expect(parseAllowedHosts('ok,http://x,a b,x@y').invalid).toEqual(['http://x', 'a b', 'x@y']);
  });
});

describe('origins', () => {
  it('allows no Origin and the service own origins; refuses foreign, null and odd schemes', () => {
    expect(isAllowedOrigin(local, undefined)).toBe(true);
    for (const o of ['http://127.0.0.1:8080', 'http://localhost:8080', 'http://[::1]:8080'])
      expect(isAllowedOrigin(local, o), o).toBe(true);
    for (const o of [
      'null',
      '',
      'http://attacker.example:8080',
      'http://127.0.0.1:8081',
      'http://localhost',
      'file://',
      'chrome-extension://abc',
      'http://127.0.0.1:8080.attacker.example',
      'garbage',
    ])
      expect(isAllowedOrigin(local, o), o).toBe(false);
  });

  it('takes the scheme default port when the Origin has none', () => {
    const p = hostPolicy({ port: 8080, bindHost: '127.0.0.1', allowedHosts: ['studio.example:443', 'plain.example:80'] });
    expect(isAllowedOrigin(p, 'https://studio.example')).toBe(true);
    expect(isAllowedOrigin(p, 'http://plain.example')).toBe(true);
    expect(isAllowedOrigin(p, 'http://studio.example')).toBe(false);
  });

  it('refuses Sec-Fetch-Site: cross-site, allows same-origin, same-site and none', () => {
    expect(checkOrigin(local, req({ 'sec-fetch-site': 'cross-site' }))?.status).toBe(403);
    for (const v of ['same-origin', 'same-site', 'none']) expect(checkOrigin(local, req({ 'sec-fetch-site': v }))).toBeNull();
  });
});

describe('guardRequest', () => {
  const host = { host: '127.0.0.1:8080' };
  const json = { ...host, 'content-type': 'application/json' };

  it('lets the clients through: CLI/node (no Origin), the panel (same origin), batched GETs', () => {
    expect(guardRequest(local, req(json, 'POST', '/trpc/tasks.create'))).toBeNull();
    expect(
      guardRequest(local, req({ ...host, 'content-type': 'Application/JSON; charset=utf-8' }, 'POST', '/trpc/tasks.create')),
    ).toBeNull();
    expect(
      guardRequest(local, req({ ...json, origin: 'http://127.0.0.1:8080', 'sec-fetch-site': 'same-origin' }, 'POST', '/trpc/tasks.create')),
    ).toBeNull();
    expect(
      guardRequest(local, req({ ...host, 'sec-fetch-site': 'same-origin' }, 'GET', '/trpc/tasks.list,queue.get?batch=1&input={}')),
    ).toBeNull();
    expect(guardRequest(local, req({ ...host, accept: 'text/event-stream' }, 'GET', '/trpc/tasks.onUpdate'))).toBeNull();
  });

  it('421 for a foreign Host on every route, before anything else', () => {
    const h = { host: 'attacker.example:8080', origin: 'http://attacker.example:8080', 'content-type': 'application/json' };
    for (const [method, url] of [
      ['POST', '/trpc/tasks.create'],
      ['GET', '/trpc/tasks.list'],
      ['GET', '/'],
      ['GET', '/metrics'],
      ['GET', '/assets/x.js'],
    ]) {
      const r = guardRequest(local, req(h, method, url));
      expect(r?.status, `${method} ${url}`).toBe(421);
      expect(r?.message).toContain('TRAINYARD_ALLOWED_HOSTS');
    }
  });

  it('403 for a foreign Origin or a cross-site fetch on the API and on any method that may write', () => {
    expect(guardRequest(local, req({ ...json, origin: 'http://attacker.example' }, 'POST', '/trpc/tasks.create'))?.status).toBe(403);
    expect(guardRequest(local, req({ ...host, origin: 'null' }, 'GET', '/trpc/tasks.list'))?.status).toBe(403);
    expect(guardRequest(local, req({ ...host, 'sec-fetch-site': 'cross-site' }, 'GET', '/trpc/tasks.onUpdate'))?.status).toBe(403);
    expect(guardRequest(local, req({ ...host, origin: 'http://attacker.example' }, 'POST', '/api/finetune/upload-dataset'))?.status).toBe(
      403,
    );
    expect(guardRequest(local, req({ ...host, origin: 'http://attacker.example' }, 'DELETE', '/'))?.status).toBe(403);
  });

  it('lets a link from another site open the panel (a navigation is cross-site)', () => {
    expect(guardRequest(local, req({ ...host, 'sec-fetch-site': 'cross-site' }, 'GET', '/'))).toBeNull();
  });

  it('415 for a body that is not JSON on the API: forms, multipart, text, octet-stream, none', () => {
    for (const type of [
      'multipart/form-data; boundary=x',
      'application/x-www-form-urlencoded',
      'text/plain',
      'application/octet-stream',
      'application/jsonp',
      'application/json-seq',
      undefined,
    ]) {
      const r = guardRequest(local, req({ ...host, ...(type ? { 'content-type': type } : {}) }, 'POST', '/trpc/tasks.create'));
      expect(r?.status, String(type)).toBe(415);
      expect(r?.message).toContain('application/json');
    }
    // Multipart is for the upload route to judge, not this check.
    expect(
      guardRequest(local, req({ ...host, 'content-type': 'multipart/form-data; boundary=x' }, 'POST', '/api/finetune/upload-dataset')),
    ).toBeNull();
  });
});
