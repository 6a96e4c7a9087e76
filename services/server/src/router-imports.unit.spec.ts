// The API layer talks to the service only: the router imports nothing from the runner or any
// other edge that runs processes or devices (issue 11). A new import of one fails here.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const EDGES = /^\.\/(runner|lease|trainer|deployments|executor|gpu)(\/|$)/;

function relativeImports(file: string): string[] {
  const source = readFileSync(join(import.meta.dirname, file), 'utf8');
  return [...source.matchAll(/^\s*(?:import|export)\b[^;]*?from\s+'([^']+)'/gms)].map((m) => m[1]!).filter((s) => s.startsWith('.'));
}

describe('router.ts', () => {
  it('given its imports, then it reads the service, its schemas and errors, and no runner or process edge', () => {
    const imports = relativeImports('router.ts');
    expect(imports).toContain('./service');
    expect(imports.filter((s) => EDGES.test(s))).toEqual([]);
  });
});
