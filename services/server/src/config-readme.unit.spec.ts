// Every variable the service reads is in the README's configuration table: an operator reads the
// table, not the source. The variables are found where they are read (one home: the config files).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './config';

const CONFIG_FILES = ['services/server/src/config.ts', 'packages/store/src/config.ts'];

/** Names read as `env.NAME`, `env['NAME']` or through config.ts's `read('NAME', …)` / `json('NAME', …)`. */
export function variablesReadIn(source: string): string[] {
  const names = new Set<string>();
  for (const re of [/\benv\.([A-Z][A-Z0-9_]*)/g, /\benv\[['"]([A-Z][A-Z0-9_]*)['"]\]/g, /\b(?:read|json)\(\s*['"]([A-Z][A-Z0-9_]*)['"]/g]) {
    for (const m of source.matchAll(re)) names.add(m[1]!);
  }
  return [...names].sort();
}

/** Names in backticks in the first column of the README's "## Configuration" table. */
export function documentedVariables(readme: string): Set<string> {
  const section = readme.split(/^## Configuration\s*$/m)[1]?.split(/^## /m)[0] ?? '';
  const names = new Set<string>();
  for (const line of section.split('\n')) {
    const first = line.startsWith('|') ? (line.split('|')[1] ?? '') : '';
    for (const m of first.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) names.add(m[1]!);
  }
  return names;
}

describe('README configuration table', () => {
  it('finds variables however config.ts reads them', () => {
    expect(variablesReadIn(`read('PORT', x); json("TRAINYARD_TRAINER", y); env.DATABASE_URL; env['HOST']`)).toEqual([
      'DATABASE_URL',
      'HOST',
      'PORT',
      'TRAINYARD_TRAINER',
    ]);
    expect(
      documentedVariables('## Configuration\n\n| variable | d |\n|---|---|\n| `PORT`, `HOST` | `8080` |\n## Next\n| `NOPE` |'),
    ).toEqual(new Set(['PORT', 'HOST']));
  });

  it('lists every variable the service reads', () => {
    const readme = documentedVariables(readFileSync(join(REPO_ROOT, 'README.md'), 'utf8'));
    const read = CONFIG_FILES.flatMap((f) => variablesReadIn(readFileSync(join(REPO_ROOT, f), 'utf8')));
    expect(read.length).toBeGreaterThan(10);
    expect(read.filter((name) => !readme.has(name))).toEqual([]);
  });
});
