import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.spec.ts', 'services/*/src/**/*.spec.ts', 'services/*/test/**/*.spec.ts', 'bench/**/*.spec.ts'],
    globalSetup: ['./packages/store/test/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    // Two cores here: keep spawned servers and trainers from starving each other.
    maxWorkers: 2,
  },
});
