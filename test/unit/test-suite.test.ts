/**
 * The suite itself: a test file imported by another registers its tests in the importer's run too, so
 * `mocha config.test.ts` ran policy.test.ts's twelve, and two files at a time (npm test, each file in a
 * process of its own) ran them twice, until 28 November 2026. Shared values live in test/helpers/.
 */
import assert from 'node:assert/strict'
import {readdirSync, readFileSync} from 'node:fs'
import {join, relative} from 'node:path'

const TEST_FILE = /\.(test|interop|dist)\.ts$/

function testFiles(dir: string): string[] {
  return readdirSync(dir, {withFileTypes: true}).flatMap((e) =>
    e.isDirectory() ? testFiles(join(dir, e.name)) : TEST_FILE.test(e.name) ? [join(dir, e.name)] : [],
  )
}

describe('the test suite', () => {
  it('no test file imports another test file', () => {
    const files = testFiles('test')
    assert.ok(files.length > 100, `found ${files.length} test files`)
    const offenders = files.flatMap((f) =>
      [...readFileSync(f, 'utf8').matchAll(/\bfrom\s+['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]/g)]
        .map((m) => m[1] ?? m[2]!)
        .filter((spec) => TEST_FILE.test(spec))
        .map((spec) => `${relative('test', f)} imports ${spec}`),
    )
    assert.deepEqual(offenders, [])
  })
})
