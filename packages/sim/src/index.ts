export * from './world';
export * from './prng';
export * from './memory-repo';
