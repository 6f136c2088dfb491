// Mutation testing (StrykerJS). Run it through `npm run mutate` (scripts/mutate.ts), which applies the
// mocha-runner patch, turns its flags into the SSHCA_MUTATE* variables read below and prints the
// per-file score table. CONTRIBUTING.md says when to run it and how to read the result.
//
// Two runners, one config:
// - mocha (default): tests run inside the Stryker worker, so the mutant is switched on in this process
//   only. Per-test coverage runs just the tests that reach a mutant. It kills what tests call in process:
//   src/ssh, pure functions, and the CA (test/helpers/ca.ts starts it in the test process, so even the
//   tests that drive the CLI against it exercise the CA's code here).
// - command: for code that runs only inside `bin/run.cjs` (src/commands, src/cli, the client flows as the
//   CLI runs them). dist/ is rebuilt from the instrumented sources (buildCommand) and each mutant runs
//   the whole test command with __STRYKER_ACTIVE_MUTANT__ set, which the CLI processes inherit. No
//   coverage analysis: every mutant runs every test given, so give it few, targeted test files.
//
// Equivalent mutants are marked where they are, with the reason:
//   // Stryker disable next-line <Mutator>: <why no test can tell the difference>
// and mutants that can only change an error message's words by the ignorer in
// scripts/stryker-ignore-messages.mjs. Both are reported as "ignored" with their reason and left out
// of the score. Never exclude a file instead.

import {globSync} from 'node:fs'

const list = (v) =>
  (v ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)

/** The files the mutation-score targets of issue 18 apply to; the default when none are chosen. */
export const TARGETS = [
  'src/ssh/cert.ts',
  'src/ssh/wire.ts',
  'src/ssh/weak-keys.ts',
  'src/client/setup/bootstrap.ts',
  'src/client/local/known-hosts.ts',
  'src/ca/provisioner/oidc.ts',
  'src/ca/policy/policy.ts',
  'src/ca/config/config.ts',
  'src/ca/authority/sign.ts',
  'src/ca/authority/host.ts',
  'src/ca/provisioner/enrollment.ts',
  'src/ca/provisioner/pop.ts',
]

// Tests that need the tests before them (one CA, one host key, built up test by test). The mocha runner
// runs only the tests that reach a mutant, alone: these would fail there and count as kills. They are
// left to the command runner until they set up their own state.
const ORDER_DEPENDENT = [
  'test/integration/ca-cli.test.ts',
  'test/integration/host-certs.test.ts',
  // a key rotation walked step by step: prepare, activate, retire
  'test/integration/rotation.test.ts',
  'test/integration/root-rotation.test.ts',
]
// Every other test file. The mocha runner loads them once and re-runs their tests for each mutant:
// state belongs in before()/beforeEach(), never in a describe() body or at import time.
// Checks generated files (oclif manifest, completions) and the help text against dist/: nothing in
// src runs in its process, so it kills no mutant, and it runs oclif from the sandbox's node_modules.
const NOT_BEHAVIOUR = ['test/integration/project.test.ts']
// Unit tests first: a mutant reached while files load (a "static" one) runs every test in a fresh
// process, and stops at the first failure; the unit tests usually fail it in a second.
const MOCHA_TESTS = [
  ...globSync('test/unit/**/*.test.ts').sort(),
  ...globSync('test/integration/**/*.test.ts').sort(),
].filter((f) => !ORDER_DEPENDENT.includes(f) && !NOT_BEHAVIOUR.includes(f))

// Tests the command runner runs per mutant, by the file mutated; SSHCA_MUTATE_TESTS overrides.
// The CA's tests whose order matters (ORDER_DEPENDENT) run here whole; the CA runs in their process and
// in `sshca ca serve`, and both see the active mutant.
const COMMAND_TESTS = {
  'src/client/setup/bootstrap.ts': [
    'test/integration/client-bootstrap-config.test.ts',
    'test/integration/bootstrap-trust.test.ts',
  ],
  'src/client/local/known-hosts.ts': [
    'test/unit/client/known-hosts.test.ts',
    'test/integration/client-bootstrap-config.test.ts',
  ],
  'src/ca/authority/host.ts': ['test/integration/host-certs.test.ts'],
  'src/ca/config/config.ts': ['test/unit/ca/config.test.ts', 'test/integration/ca-cli.test.ts'],
}

const runner = process.env.SSHCA_MUTATE_RUNNER || 'mocha'
if (runner !== 'mocha' && runner !== 'command')
  throw new Error(`SSHCA_MUTATE_RUNNER must be mocha or command, not ${runner}`)
const mutate = list(process.env.SSHCA_MUTATE).length ? list(process.env.SSHCA_MUTATE) : TARGETS
const chosenTests = list(process.env.SSHCA_MUTATE_TESTS)
const concurrency = Number(process.env.SSHCA_MUTATE_CONCURRENCY || 2)

function commandTests() {
  if (chosenTests.length) return chosenTests
  const tests = new Set(mutate.flatMap((f) => COMMAND_TESTS[f] ?? []))
  if (tests.size === 0)
    throw new Error(`the command runner needs tests for ${mutate.join(', ')}: pass --tests (SSHCA_MUTATE_TESTS)`)
  return [...tests]
}

const shellQuote = (s) => `'${s.replaceAll("'", `'\\''`)}'`

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
const base = {
  packageManager: 'npm',
  mutate,
  concurrency,
  // the box is shared and the integration tests start real daemons: be generous before calling a hang
  timeoutMS: 20_000,
  timeoutFactor: 2,
  dryRunTimeoutMinutes: 20,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  clearTextReporter: {reportMutants: true, reportTests: false, reportScoreTable: true},
  htmlReporter: {fileName: 'reports/mutation/mutation.html'},
  jsonReporter: {fileName: 'reports/mutation/mutation.json'},
  // mutants that only change an error message's words: see the file for the exact rule
  plugins: ['./scripts/stryker-ignore-messages.mjs'],
  ignorers: ['message-text'],
  tempDirName: '.stryker-tmp',
  ignorePatterns: ['/coverage', '/reports', '/.stryker-tmp', '/.git'],
  cleanTempDir: true,
}

// Chosen test files that need their order (--tests) run whole for every mutant the run reaches,
// instead of test by test: slower, but a test never runs without the ones before it.
const wholeFiles = chosenTests.flatMap((g) => globSync(g)).some((f) => ORDER_DEPENDENT.includes(f))

const mocha = {
  ...base,
  testRunner: 'mocha',
  plugins: [...base.plugins, '@stryker-mutator/mocha-runner'],
  coverageAnalysis: wholeFiles ? 'all' : 'perTest',
  mochaOptions: {
    config: '.mocharc.json',
    spec: chosenTests.length ? chosenTests : MOCHA_TESTS,
  },
}

const command = () => ({
  ...base,
  testRunner: 'command',
  coverageAnalysis: 'off',
  // dist/ from the instrumented sources: the CLI the tests start carries every mutant, off by default.
  // `npm run build`, not tsc alone: bin/run.cjs runs list, login and proxycommand from the fast path's
  // bundles (dist/fast), and those of the last build carry no mutant. (Run without a shell: no &&.)
  buildCommand: 'npm run build',
  commandRunner: {
    command: `mocha --timeout 60000 --bail ${commandTests().map(shellQuote).join(' ')}`,
  },
})

export default runner === 'command' ? command() : mocha
