// The scripted `vllm` for specs (test/fixtures/vllm/vllm): put its folder first on PATH and the
// service starts it as it would start vLLM.
import { delimiter, join } from 'node:path';

const FAKE_VLLM_DIR = join(import.meta.dirname, 'fixtures/vllm');

/** PATH with the scripted `vllm` found first. */
export function pathWithFakeVllm(path = process.env.PATH ?? ''): string {
  return `${FAKE_VLLM_DIR}${delimiter}${path}`;
}
