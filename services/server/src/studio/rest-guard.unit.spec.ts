// The request checks of http-guard.ts on Studio's REST routes: Origin and Sec-Fetch-Site on
// every method (reads return data too), a JSON body or none at all on the others (Studio posts
// cancel and switch-model without one; a form always has a content type), the upload's
// multipart form left to the upload route.
import { describe, expect, it } from 'vitest';
import { guardRequest, hostPolicy, type RequestHead } from '../http-guard';

const policy = hostPolicy({ port: 8080, bindHost: '127.0.0.1', allowedHosts: ['studio.lan:5173'] });
const self = { host: '127.0.0.1:8080' };
const req = (method: string, url: string, headers: Record<string, string> = {}): RequestHead => ({
  method,
  url,
  headers: { ...self, ...headers },
});
const status = (r: RequestHead) => guardRequest(policy, r)?.status ?? null;

describe('the guard on /api', () => {
  it('refuses a foreign Host everywhere', () => {
    expect(status(req('GET', '/api/finetune/tasks', { host: 'attacker.example:8080' }))).toBe(421);
  });

  it('refuses a foreign origin and cross-site fetches on reads too, and lets the allowed names in', () => {
    expect(status(req('GET', '/api/finetune/tasks', { origin: 'http://attacker.example' }))).toBe(403);
    expect(status(req('GET', '/api/finetune/tasks/t1/download', { 'sec-fetch-site': 'cross-site' }))).toBe(403);
    expect(status(req('GET', '/api/finetune/tasks'))).toBeNull();
    expect(status(req('GET', '/api/finetune/tasks', { origin: 'http://127.0.0.1:8080', 'sec-fetch-site': 'same-origin' }))).toBeNull();
    // Studio's dev server, named in TRAINYARD_ALLOWED_HOSTS, proxying /api with its own Host and Origin.
    expect(
      status(
        req('POST', '/api/finetune/create', {
          host: 'studio.lan:5173',
          origin: 'http://studio.lan:5173',
          'content-type': 'application/json',
        }),
      ),
    ).toBeNull();
  });

  it('lets a POST or DELETE without a body through, and one with a JSON body', () => {
    expect(status(req('POST', '/api/finetune/tasks/t1/cancel'))).toBeNull();
    expect(status(req('POST', '/api/finetune/tasks/t1/cancel', { 'content-length': '0' }))).toBeNull();
    expect(status(req('DELETE', '/api/finetune/tasks/t1'))).toBeNull();
    expect(status(req('POST', '/api/finetune/switch-model?model_path=m'))).toBeNull();
    expect(status(req('POST', '/api/finetune/create', { 'content-type': 'application/json; charset=utf-8' }))).toBeNull();
  });

  it('refuses a body that is not JSON: forms, text, and an untyped body', () => {
    for (const type of ['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'text/plain'])
      expect(status(req('POST', '/api/finetune/create', { 'content-type': type })), type).toBe(415);
    expect(status(req('POST', '/api/finetune/tasks/t1/cancel', { 'content-length': '3' }))).toBe(415);
    expect(status(req('POST', '/api/finetune/tasks/t1/cancel', { 'transfer-encoding': 'chunked' }))).toBe(415);
  });

  it("leaves the upload's multipart form to the upload route, with the origin checks", () => {
    expect(status(req('POST', '/api/finetune/upload-dataset', { 'content-type': 'multipart/form-data; boundary=x' }))).toBeNull();
    expect(status(req('POST', '/api/finetune/upload-dataset?x=1', { 'content-type': 'multipart/form-data; boundary=x' }))).toBeNull();
    expect(
      status(
        req('POST', '/api/finetune/upload-dataset', {
          'content-type': 'multipart/form-data; boundary=x',
          origin: 'http://attacker.example',
        }),
      ),
    ).toBe(403);
    // Not the upload route: a path that only starts like it.
    expect(status(req('POST', '/api/finetune/upload-dataset-x', { 'content-type': 'multipart/form-data; boundary=x' }))).toBe(415);
  });
});
