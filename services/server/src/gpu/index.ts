// GPU probe: `GpuProbe` (IO, runs nvidia-smi) over pure parsing. The model recommendation and
// the memory estimate are @trainyard/catalogue's, shared with the CLI and the panel.
export * from './types';
export * from './parse';
export * from './probe';
