import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  {
    ignores: [
      'dist/',
      'coverage/',
      'node_modules/',
      'oclif.manifest.json',
      '.cache/',
      'build/',
      'reports/',
      '.stryker-tmp/',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // the CommonJS entry (bin/run.cjs says why it is not an ES module)
    files: ['**/*.cjs'],
    languageOptions: {sourceType: 'commonjs', globals: {__filename: 'readonly', __dirname: 'readonly'}},
  },
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        URL: 'readonly',
        performance: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        fetch: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
        structuredClone: 'readonly',
        setImmediate: 'readonly',
        Response: 'readonly',
        Request: 'readonly',
        Headers: 'readonly',
        NodeJS: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', {argsIgnorePattern: '^_', varsIgnorePattern: '^_'}],
      '@typescript-eslint/consistent-type-imports': ['error', {fixStyle: 'inline-type-imports'}],
      'no-console': 'error',
      eqeqeq: ['error', 'always'],
    },
  },
  {
    // src/ssh, src/client and src/ca never print and never exit: only src/cli and src/commands decide that.
    files: ['src/ssh/**', 'src/client/**', 'src/ca/**', 'src/protocol/**'],
    rules: {
      'no-restricted-properties': [
        'error',
        {object: 'process', property: 'exit', message: 'throw an SshcaError; src/cli decides the exit code'},
        {object: 'process', property: 'stdout', message: 'return a value; src/cli renders it'},
      ],
    },
  },
  {
    files: ['test/**', 'bench/**', 'scripts/**'],
    rules: {'no-console': 'off', '@typescript-eslint/no-non-null-assertion': 'off'},
  },
)
