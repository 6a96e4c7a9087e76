// GPU probe and model recommendation: `GpuProbe` (IO, runs nvidia-smi) over pure parsing,
// recommendation and memory-estimate functions.
export * from './types';
export * from './parse';
export * from './estimate';
export * from './probe';
