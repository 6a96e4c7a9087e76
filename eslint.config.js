// ESLint for the whole repository: typescript-eslint's recommended rules, type-aware where a
// mistake costs most (floating promises in a service that must not die on a stray rejection),
// React's hook rules in the panel. Formatting is Prettier's job, not ESLint's.
import js from '@eslint/js';
import reactHooks from 'eslint-plugin-react-hooks';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: ['**/node_modules/', '**/dist/', 'migrations/', 'bench/results/', 'bench/scratch/', '**/test-results/', '.trainyard/'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Empty catch blocks that mean "best effort" carry a comment saying so.
      'no-empty': ['error', { allowEmptyCatch: true }],
      // The sanitisers (safe text, terminal text, the protocol parse) match control characters
      // on purpose.
      'no-control-regex': 'off',
      // It flags `let x = null; try { x = … } finally { use(x) }`, the shape cleanup code takes.
      'no-useless-assignment': 'off',
    },
  },
  {
    // Specs read JSON a program printed; typing every such read adds nothing to what they check.
    files: ['**/*.spec.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    files: ['**/*.ts', '**/*.tsx'],
    ignores: ['services/studio/**'],
    // The root tsconfig's one program holds every file here: one program to build, where the
    // nearest tsconfig of each file would build one per package, each with what it imports.
    languageOptions: { parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
    },
  },
  {
    files: ['services/studio/src/**/*.{ts,tsx}'],
    languageOptions: { globals: { ...globals.browser } },
    plugins: { 'react-hooks': reactHooks },
    rules: { 'react-hooks/rules-of-hooks': 'error', 'react-hooks/exhaustive-deps': 'warn' },
  },
);
