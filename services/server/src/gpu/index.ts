// GPU probe: `GpuProbe` (IO, runs nvidia-smi) over pure parsing, and the inventory of schedulable
// devices built from it (or from a fixed list). The model recommendation and the memory estimate
// are @trainyard/catalogue's, shared with the CLI and the panel.
export * from './types';
export * from './parse';
export * from './probe';
export * from './inventory';
