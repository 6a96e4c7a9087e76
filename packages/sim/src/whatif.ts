// The what-if replay on its own (no simulated service): for the bench and the whatif command.
export * from './replay';
export * from './trace';
export * from './log-jobs';
export { Prng } from './prng';
