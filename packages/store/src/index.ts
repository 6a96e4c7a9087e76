export * from './database';
export * from './event-store';
export * from './read-models';
export * from './task-store';
export * from './task-logs';
export * from './rebuild';
export * from './projection-version';
export * from './config';
export * as tables from './schema';
