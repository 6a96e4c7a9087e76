#!/usr/bin/env node
// The `trainyard` command. The CLI is TypeScript run without a build step: tsx's ESM loader is
// registered for this process only (no child process), then src/main.ts is imported.
import { fileURLToPath } from 'node:url';
import { tsImport } from 'tsx/esm/api';

const tsconfig = fileURLToPath(new URL('../tsconfig.json', import.meta.url));
await tsImport('../src/main.ts', { parentURL: import.meta.url, tsconfig });
