import assert from 'node:assert/strict'
import {renderSshConfig} from '../../../src/ca/authority/ssh-config.ts'
import {sshpopAudiences} from '../../../src/ca/provisioner/pop.ts'
import {sshpopAudience} from '../../../src/protocol/tokens.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'

describe("SSHPOP audiences (step's shape)", () => {
  it("the client names the CA URL's origin, /1.0/ssh/<action> and the provisioner, as step's url.ResolveReference does", () => {
    assert.equal(
      sshpopAudience('https://ca.example.com:9000', 'renew', 'sshpop'),
      'https://ca.example.com:9000/1.0/ssh/renew#sshpop/sshpop',
    )
    // a path on the CA URL is replaced, not kept (step resolves an absolute path)
    assert.equal(
      sshpopAudience('https://ca.example.com/some/prefix/', 'revoke', 'pop'),
      'https://ca.example.com/1.0/ssh/revoke#sshpop/pop',
    )
    assert.equal(
      sshpopAudience('http://127.0.0.1:8443', 'rekey', 'sshpop'),
      'https://127.0.0.1:8443/1.0/ssh/rekey#sshpop/sshpop',
    )
  })

  it('the CA answers to each of its dnsNames, with and without /1.0, IPv6 in brackets', () => {
    assert.deepEqual(sshpopAudiences(['ca.example.com', '::1'], 'renew', 'sshpop'), [
      'https://ca.example.com/1.0/ssh/renew#sshpop/sshpop',
      'https://ca.example.com/ssh/renew#sshpop/sshpop',
      'https://[::1]/1.0/ssh/renew#sshpop/sshpop',
      'https://[::1]/ssh/renew#sshpop/sshpop',
    ])
  })
})

describe('POST /ssh/config templates', () => {
  const keys = {
    userKeys: [generatePrivateKey('ed25519').publicKey],
    hostKeys: [generatePrivateKey('ecdsa').publicKey],
    hostPattern: '*.corp',
  }
  const text = (r: ReturnType<typeof renderSshConfig>, name: string) =>
    Buffer.from((r.userTemplates ?? r.hostTemplates)!.find((t) => t.name === name)!.content, 'base64').toString()

  it('a --context goes into check-host and proxycommand; an older step (no template version) gets includes as a file', () => {
    const r = renderSshConfig('user', {StepPath: '/h/.step', StepBasePath: '/h/.step-base', Context: 'prod'}, keys)
    assert.equal(text(r, 'config.tpl'), 'Host *\n\tInclude "/h/.step-base/ssh/includes"')
    assert.equal(
      text(r, 'step_config.tpl'),
      'Match exec "step ssh check-host --context prod %h"\n\tUserKnownHostsFile "/h/.step/ssh/known_hosts"\n\tProxyCommand step ssh proxycommand --context prod %r %h %p\n',
    )
    const inc = r.userTemplates!.find((t) => t.name === 'step_includes.tpl')!
    assert.deepEqual([inc.type, inc.path], ['file', 'ssh/includes'])
    assert.match(text(r, 'known_hosts.tpl'), /^@cert-authority \*\.corp ecdsa-sha2-nistp256 /)
  })

  it('Windows paths as step-ca writes them', () => {
    const r = renderSshConfig(
      'user',
      {StepPath: 'C:\\Users\\a\\.step', GOOS: 'windows', StepSSHTemplateVersion: 'v2'},
      keys,
    )
    assert.equal(text(r, 'config.tpl'), 'Host *\n\tInclude "/Users/a/.step/ssh/includes"')
    assert.match(
      text(r, 'step_config.tpl'),
      /ProxyCommand C:\\Windows\\System32\\cmd\.exe \/c step ssh proxycommand %r %h %p/,
    )
  })

  it('a host pattern ssh_config cannot hold as one word falls back to step-ca\'s "*"', () => {
    const r = renderSshConfig('user', {StepPath: '/h'}, {...keys, hostPattern: '*.a,*.b c'})
    assert.match(text(r, 'known_hosts.tpl'), /^@cert-authority \* /)
  })

  it('during a CA key rotation: every published key, one line each (known_hosts and TrustedUserCAKeys)', () => {
    const two = {
      userKeys: [generatePrivateKey('ed25519').publicKey, generatePrivateKey('ed25519').publicKey],
      hostKeys: [generatePrivateKey('ed25519').publicKey, generatePrivateKey('ecdsa').publicKey],
      hostPattern: '*.corp',
    }
    const kh = text(renderSshConfig('user', {StepPath: '/h'}, two), 'known_hosts.tpl')
    assert.deepEqual(
      kh.trimEnd().split('\n'),
      two.hostKeys.map((k) => `@cert-authority *.corp ${k.type} ${k.blob.toString('base64')}`),
    )
    const ca = text(renderSshConfig('host', {Certificate: 'c-cert.pub', Key: 'c'}, two), 'ca.tpl')
    assert.deepEqual(
      ca.trimEnd().split('\n'),
      two.userKeys.map((k) => `${k.type} ${k.blob.toString('base64')}`),
    )
  })
})
