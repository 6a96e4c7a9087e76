export * from './task';
export * from './events';
export * from './errors';
export * from './lifecycle';
export * from './scheduling';
export * from './projection';
export * from './recovery';
export { safeText, safeValue, safeJson } from './safe-text.mjs';
export * from './run';
