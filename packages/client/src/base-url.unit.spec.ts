import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_URL, serviceUrl } from './base-url';

describe('serviceUrl: one answer to "where is the service" for tRPC, upload and download', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.unstubAllGlobals();
  });

  it('given a url, then it wins, without its trailing slashes', () => {
    vi.stubEnv('TRAINYARD_URL', 'http://elsewhere:1');
    expect(serviceUrl('http://gpu-box:8080//')).toBe('http://gpu-box:8080');
  });

  it('given no url, then TRAINYARD_URL, before a page origin', () => {
    vi.stubEnv('TRAINYARD_URL', 'http://from-env:9000/');
    vi.stubGlobal('location', { origin: 'http://page:5173' });
    expect(serviceUrl()).toBe('http://from-env:9000');
  });

  it('given neither, then the page origin, else the local default', () => {
    vi.stubEnv('TRAINYARD_URL', undefined);
    expect(serviceUrl()).toBe(DEFAULT_URL);
    vi.stubGlobal('location', { origin: 'http://page:5173' });
    expect(serviceUrl()).toBe('http://page:5173');
  });
});
