// What a trainer may see of the service's environment. The service's environment holds its own
// secrets (database passwords, cloud and hub tokens): a trainer runs arbitrary code from a model
// repository or a user's script, and its environment is also written to launch.json. So it gets
// an allow-list (what a trainer needs to find its tools, GPUs and caches), the names the operator
// passes on purpose (TRAINYARD_TRAINER_ENV), and the protocol variables the runner adds.

/** Passed whatever the operator configures: names, or prefixes ending in `*`. */
const TRAINER_ENV_ALLOWED: readonly string[] = [
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'LANG',
  'LANGUAGE',
  'LC_*',
  'TZ',
  'TMPDIR',
  'LD_LIBRARY_PATH',
  'CUDA_*',
  'NVIDIA_*',
  'NCCL_*',
  'PYTHON*',
  'VIRTUAL_ENV',
  'CONDA_PREFIX',
  'OMP_NUM_THREADS',
  'MKL_NUM_THREADS',
  'TOKENIZERS_PARALLELISM',
  'PYTORCH_CUDA_ALLOC_CONF',
  'XDG_CACHE_HOME',
  // Hugging Face caches and offline switches; never HF_TOKEN unless the operator passes it.
  'HF_HOME',
  'HF_HUB_CACHE',
  'HF_DATASETS_CACHE',
  'HF_HUB_OFFLINE',
  'HF_DATASETS_OFFLINE',
  'TRANSFORMERS_CACHE',
  'TRANSFORMERS_OFFLINE',
];

/** A variable name, or a prefix ending in `*` (`WANDB_*`). */
export const ENV_PATTERN_RE = /^[A-Za-z_][A-Za-z0-9_]*\*?$/;

function matches(pattern: string, name: string): boolean {
  return pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

/**
 * The part of `env` a trainer gets: variables named by the allow-list or by `passThrough`
 * (operator-configured names or `PREFIX*` patterns). The service's own variables (TRAINYARD_*)
 * never pass, whatever the patterns say: the runner sets the ones a trainer needs.
 */
export function trainerEnv(env: Readonly<Record<string, string | undefined>>, passThrough: readonly string[] = []): Record<string, string> {
  const patterns = [...TRAINER_ENV_ALLOWED, ...passThrough];
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || name.startsWith('TRAINYARD_')) continue;
    if (patterns.some((p) => matches(p, name))) out[name] = value;
  }
  return out;
}
