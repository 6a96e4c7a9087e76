/** nvidia-smi printed something that is not the output we asked for. */
export class NvidiaSmiParseError extends Error {
  override readonly name = 'NvidiaSmiParseError';
}
