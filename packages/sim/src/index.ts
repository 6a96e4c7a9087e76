export * from './world';
export * from './lease-world';
export * from './prng';
export * from './memory-repo';
export * from './replay';
export * from './trace';
export * from './log-jobs';
