// config.ts reads the environment once; what it read is passed down (here: what a trainer inherits).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from './config';

describe('loadConfig', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'ty-config-'));

  it('given the environment, then a trainer inherits the allow-listed variables and the names passed on purpose, nothing else', () => {
    const config = loadConfig({
      TRAINYARD_DATA_DIR: dataDir,
      PATH: '/usr/bin',
      CUDA_HOME: '/cuda',
      DATABASE_URL: 'postgres://user:secret@db/x',
      HF_TOKEN: 'hf_x',
      AWS_SECRET_ACCESS_KEY: 'nope',
      TRAINYARD_TRAINER_ENV: 'HF_TOKEN',
    });
    expect(config.trainerInheritedEnv).toEqual({ PATH: '/usr/bin', CUDA_HOME: '/cuda', HF_TOKEN: 'hf_x' });
  });

  it("given TRAINYARD_DB_QUERY_TIMEOUT_MS, then the database's statements are limited by it (2 min unset, none at 0), and a bad value is refused naming the variable", () => {
    expect(loadConfig({ TRAINYARD_DATA_DIR: dataDir }).storage.queryTimeoutMs).toBe(120_000);
    expect(loadConfig({ TRAINYARD_DATA_DIR: dataDir, TRAINYARD_DB_QUERY_TIMEOUT_MS: '0' }).storage.queryTimeoutMs).toBe(0);
    expect(loadConfig({ TRAINYARD_DATA_DIR: dataDir, TRAINYARD_DB_QUERY_TIMEOUT_MS: '5000' }).storage.queryTimeoutMs).toBe(5000);
    for (const bad of ['-1', '1.5', 'ten', String(25 * 3_600_000)])
      expect(() => loadConfig({ TRAINYARD_DATA_DIR: dataDir, TRAINYARD_DB_QUERY_TIMEOUT_MS: bad }), bad).toThrow(
        /TRAINYARD_DB_QUERY_TIMEOUT_MS/,
      );
  });
});
