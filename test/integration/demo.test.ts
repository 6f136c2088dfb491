/** `sshca demo`: the README's first command must work on a fresh machine, browser or not. */
import assert from 'node:assert/strict'
import {existsSync} from 'node:fs'
import {sshca} from '../helpers/cli.ts'
import {sshAdd, startAgent} from '../helpers/openssh.ts'

describe('sshca demo', function () {
  this.timeout(120_000)

  it('--auto without an agent: starts a private one, signs in, lists, logs into sshd, cleans up', async () => {
    const r = await sshca(['demo', '--auto', '--json'], {env: {SSH_AUTH_SOCK: '', DISPLAY: ''}})
    assert.equal(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout)
    assert.equal(doc.agent, 'private')
    assert.deepEqual(
      doc.steps.map((s: {title: string}) => s.title),
      [
        'Started a development identity provider',
        'Created a CA and started it',
        'Bootstrapped the context "demo"',
        'Found an ssh-agent',
        'Signed in as demo@example.com and got a certificate',
        'sshca list',
        'Logged into a throwaway sshd with the certificate',
        'Stopped everything and removed the demo files',
      ],
    )
    for (const s of doc.steps) assert.equal(typeof s.ms, 'number')
    assert.match(doc.ssh.output, /^hello from .* as /)
    assert.equal(doc.login.method, 'browser')
    assert.equal(doc.list.certificates.length, 1)
    assert.doesNotMatch(r.stderr, /oidc-provider WARNING/)
    assert.match(r.stderr, /http:\/\/127\.0\.0\.1:\d+\/auth\?/)
    const tmp = /in (\/\S+sshca-demo-\w+)\/sshca-home/.exec(JSON.stringify(doc))
    if (tmp) assert.equal(existsSync(tmp[1]!), false)
  })

  it('uses the running agent and takes the demo certificate back out at the end; prints each step with its time', async () => {
    const agent = await startAgent()
    try {
      const r = await sshca(['demo', '--auto'], {env: {SSH_AUTH_SOCK: agent.socket, DISPLAY: ''}})
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, /✓ Found an ssh-agent\s+\d+ ms\n\s+using yours/)
      assert.match(r.stdout, /✓ Signed in as demo@example.com and got a certificate\s+\d+(\.\d)? m?s/)
      assert.match(r.stdout, /→ hello from/)
      assert.doesNotMatch((await sshAdd(agent, ['-L'])).stdout, /cert-v01/)
    } finally {
      await agent.stop()
    }
  })
})
