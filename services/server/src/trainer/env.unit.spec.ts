import { describe, expect, it } from 'vitest';
import { ENV_PATTERN_RE, trainerEnv } from './env';

const service = {
  PATH: '/usr/bin',
  HOME: '/home/svc',
  LANG: 'C.UTF-8',
  LC_ALL: 'C.UTF-8',
  TZ: 'UTC',
  TMPDIR: '/tmp',
  LD_LIBRARY_PATH: '/usr/local/cuda/lib64',
  CUDA_HOME: '/usr/local/cuda',
  CUDA_VISIBLE_DEVICES: '0,1',
  NVIDIA_DRIVER_CAPABILITIES: 'compute',
  PYTHONPATH: '/opt/lib',
  PYTHONUNBUFFERED: '1',
  HF_HOME: '/cache/hf',
  TRANSFORMERS_CACHE: '/cache/tf',
  // secrets of the service and its operator
  DATABASE_URL: 'postgres://u:pw@db/x',
  PGPASSWORD: 'pw',
  HF_TOKEN: 'hf_secret',
  HUGGING_FACE_HUB_TOKEN: 'hf_secret2',
  AWS_SECRET_ACCESS_KEY: 'aws',
  AWS_ACCESS_KEY_ID: 'AKIA',
  GITHUB_TOKEN: 'gh',
  SSH_AUTH_SOCK: '/run/ssh',
  npm_config_token: 'npm',
  TRAINYARD_DB_SCHEMA: 'x',
  TRAINYARD_TRAINER_ENV: 'HF_TOKEN',
  WANDB_API_KEY: 'wandb',
  WANDB_PROJECT: 'p',
};

describe('trainerEnv', () => {
  it('passes only the allow-list', () => {
    expect(trainerEnv(service)).toEqual({
      PATH: '/usr/bin',
      HOME: '/home/svc',
      LANG: 'C.UTF-8',
      LC_ALL: 'C.UTF-8',
      TZ: 'UTC',
      TMPDIR: '/tmp',
      LD_LIBRARY_PATH: '/usr/local/cuda/lib64',
      CUDA_HOME: '/usr/local/cuda',
      CUDA_VISIBLE_DEVICES: '0,1',
      NVIDIA_DRIVER_CAPABILITIES: 'compute',
      PYTHONPATH: '/opt/lib',
      PYTHONUNBUFFERED: '1',
      HF_HOME: '/cache/hf',
      TRANSFORMERS_CACHE: '/cache/tf',
    });
  });

  it('passes what the operator names, by name or prefix', () => {
    const env = trainerEnv(service, ['HF_TOKEN', 'WANDB_*']);
    expect(env.HF_TOKEN).toBe('hf_secret');
    expect(env.WANDB_API_KEY).toBe('wandb');
    expect(env.WANDB_PROJECT).toBe('p');
    expect(env.HUGGING_FACE_HUB_TOKEN).toBeUndefined();
    expect(env.PGPASSWORD).toBeUndefined();
  });

  it('never passes the service’s own variables, even when asked to', () => {
    const env = trainerEnv(service, ['TRAINYARD_*', 'TRAINYARD_DB_SCHEMA', 'DATABASE_URL']);
    expect(Object.keys(env).filter((k) => k.startsWith('TRAINYARD_'))).toEqual([]);
    // DATABASE_URL is not a TRAINYARD_ variable: an operator who names it gets it, on purpose.
    expect(env.DATABASE_URL).toBe('postgres://u:pw@db/x');
  });

  it('skips unset values', () => {
    expect(trainerEnv({ PATH: undefined, HOME: '/h' })).toEqual({ HOME: '/h' });
  });

  it('accepts names and trailing-star prefixes as patterns', () => {
    for (const ok of ['HF_TOKEN', 'WANDB_*', '_X', 'a1']) expect(ENV_PATTERN_RE.test(ok)).toBe(true);
    for (const bad of ['', '*', 'A*B', '1A', 'A-B', 'A B', 'A=B']) expect(ENV_PATTERN_RE.test(bad)).toBe(false);
  });
});
