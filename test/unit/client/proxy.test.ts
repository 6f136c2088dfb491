/**
 * Which context `sshca proxycommand` signs in to for a host (src/client/login/proxy.ts): contexts
 * written as bootstrap and config leave them, in a temp $SSHCA_HOME.
 */
import assert from 'node:assert/strict'
import {mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {contextForHost} from '../../../src/client/login/proxy.ts'
import {tempDir} from '../../helpers/tmp.ts'

describe('contextForHost (proxycommand)', () => {
  let home: string
  const context = (name: string, s: Record<string, unknown>) => {
    const dir = join(home, 'contexts', name)
    mkdirSync(dir, {recursive: true})
    const settings = {name, caUrl: 'https://ca.example.com', rootFingerprint: 'ab'.repeat(32), userCaKeys: []}
    const more = {hostCaKeys: [], bootstrappedAt: '2026-11-26T00:00:00.000Z'}
    writeFileSync(join(dir, 'context.json'), JSON.stringify({...settings, ...more, ...s}))
    writeFileSync(join(dir, 'root_ca.crt'), 'a root\n')
  }
  beforeEach(() => {
    home = join(tempDir('sshca-proxy-'), 'sshca')
  })

  it("the first context by name whose accepted pattern matches (configured, else the CA's as bootstrap showed it), never one the CA's refreshed pattern alone matches", async () => {
    // its CA switched to "*" after bootstrap, and a login or config --roots saved that without asking
    context('a-evil', {hostPattern: '*', acceptedCaPattern: '*.evil.test'})
    // bootstrapped by an older sshca and never configured: nothing the person accepted is known
    context('b-old', {hostPattern: '*'})
    context('c-narrowed', {
      hostPattern: '*.example.com',
      acceptedCaPattern: '*.example.com',
      configuredPattern: 'web.example.com',
    })
    context('d-prod', {hostPattern: '*.example.com', acceptedCaPattern: '*.example.com'})
    writeFileSync(join(home, 'current'), 'b-old\n')
    assert.equal(await contextForHost(home, 'db.example.com'), 'd-prod')
    assert.equal(await contextForHost(home, 'WEB.example.com'), 'c-narrowed')
    assert.equal(await contextForHost(home, 'x.evil.test'), 'a-evil')
    // matched by none: the current context
    assert.equal(await contextForHost(home, 'github.com'), 'b-old')
  })

  it('skips a damaged context and one whose pattern this version cannot read', async () => {
    mkdirSync(join(home, 'contexts', 'a-damaged'), {recursive: true})
    writeFileSync(join(home, 'contexts', 'a-damaged', 'context.json'), '{')
    context('b-unreadable', {hostPattern: '*', acceptedCaPattern: '*.example.com\n@cert-authority *'})
    context('c-ok', {hostPattern: '*.example.com', acceptedCaPattern: '*.example.com'})
    assert.equal(await contextForHost(home, 'db.example.com'), 'c-ok')
    assert.equal(await contextForHost(home, 'github.com'), undefined)
  })
})
