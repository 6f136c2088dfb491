/**
 * Issue 12, item 4: `sshca login` against a real OpenSSH ssh-agent that holds an expired certificate
 * of the CA, a current one it supersedes, a current one for another identity, another CA's
 * certificates (expired and current) and a plain key: only the expired and the superseded ones of
 * this CA go. And sshd's MaxAuthTries, the reason for all this, for real.
 */
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {caPaths} from '../../src/ca/config/layout.ts'
import {readSealedKey} from '../../src/ca/keys/keystore.ts'
import {AgentClient} from '../../src/ssh/agent.ts'
import {signCertificate} from '../../src/ssh/cert.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {keySigner, type Signer} from '../../src/ssh/signature.ts'
import {PASSWORD} from '../helpers/ca.ts'
import {sshca} from '../helpers/cli.ts'
import {idToken} from '../helpers/idp-token.ts'
import {currentUser, ssh, startSshd} from '../helpers/openssh.ts'
import {startWorld, type World} from '../helpers/world.ts'

describe('agent hygiene with a real ssh-agent (issue 12)', function () {
  this.timeout(120_000)
  let w: World
  let userCa: Signer
  const foreignCa = keySigner(generatePrivateKey('ed25519').keyObject)
  const now = (): bigint => BigInt(Math.floor(Date.now() / 1000))
  const user = currentUser()

  before(async () => {
    w = await startWorld()
    await w.bootstrap()
    userCa = keySigner(await readSealedKey(caPaths(w.t.init.dir).userCaKey, PASSWORD))
  })
  after(async () => w?.stop())

  async function load(
    by: Signer,
    o: {serial: bigint; keyId: string; principals: string[]; until: bigint; comment: string},
  ): Promise<void> {
    const key = generatePrivateKey('ed25519')
    const cert = await signCertificate(
      {
        type: 'user',
        publicKey: key.publicKey,
        serial: o.serial,
        keyId: o.keyId,
        principals: o.principals,
        validAfter: now() - 7200n,
        validBefore: o.until,
      },
      by,
    )
    // no lifetime: what an agent that slept, or one that ignores lifetimes, ends up holding
    await AgentClient.with({socketPath: w.agent.socket}, (a) => a.addCertificate(key, cert, {comment: o.comment}))
  }

  it("login removes this CA's expired and superseded certificates, keeps everything else, and adds the new one", async () => {
    const alice = {keyId: 'alice@example.com', principals: ['alice', user]}
    await load(userCa, {...alice, serial: 101n, until: now() - 600n, comment: 'sshca:test:sso'})
    await load(userCa, {...alice, serial: 102n, until: now() - 30n, comment: 'added by hand'})
    await load(userCa, {...alice, serial: 103n, until: now() + 900n, comment: 'sshca:test:sso'})
    await load(userCa, {
      keyId: 'gha:acme/app:1',
      principals: ['deploy'],
      serial: 104n,
      until: now() + 900n,
      comment: 'sshca:test:token',
    })
    await load(foreignCa, {...alice, serial: 201n, until: now() - 600n, comment: 'another CA, expired'})
    await load(foreignCa, {...alice, serial: 202n, until: now() + 900n, comment: 'another CA'})
    const plain = generatePrivateKey('ed25519')
    await AgentClient.with({socketPath: w.agent.socket}, (a) => a.addKey(plain, {comment: 'my own key'}))

    const {idToken: t} = await idToken(w.idp.issuer, {clientId: 'sshca-cli', login: 'alice@example.com'})
    const r = await sshca(['login', '--identity-token-file', '-', '--json'], {env: w.env, input: t})
    assert.equal(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout)
    assert.deepEqual(doc.agent.removed.map((x: {serial: string; why: string}) => `${x.serial}:${x.why}`).sort(), [
      '101:expired',
      '102:expired',
      '103:superseded',
    ])
    const left = await AgentClient.with({socketPath: w.agent.socket}, (a) => a.list())
    const serials = left.map((i) => i.certificate?.serial.toString() ?? i.comment).sort()
    assert.deepEqual(serials, ['104', '201', '202', doc.certificate.serial, 'my own key'].sort())

    // the text says what went
    const text = await sshca(['login', '--identity-token-file', '-', '--force'], {
      env: w.env,
      input: (await idToken(w.idp.issuer, {clientId: 'sshca-cli', login: 'alice@example.com'})).idToken,
    })
    assert.equal(text.code, 0, text.stderr)
    assert.match(text.stdout, /Removed from the agent: alice@example\.com \(superseded\)\./)
  })

  it("why it matters: sshd's MaxAuthTries against an agent full of stale certificates, and after a login", async () => {
    const sshd = await startSshd({
      userCaKeys: readFileSync(caPaths(w.t.init.dir).userCaPub, 'utf8').trim().split('\n'),
      extraConfig: ['MaxAuthTries 3'],
    })
    try {
      await AgentClient.with({socketPath: w.agent.socket}, (a) => a.removeAll())
      for (let i = 0; i < 4; i++)
        await load(userCa, {
          keyId: 'alice@example.com',
          principals: ['alice', user],
          serial: BigInt(300 + i),
          until: now() - 60n,
          comment: 'sshca:test:sso',
        })
      const refused = await ssh({port: sshd.port, agentSocket: w.agent.socket})
      assert.notEqual(refused.code, 0)
      assert.match(
        `${refused.stderr}${sshd.log()}`,
        /Too many authentication failures|maximum authentication attempts exceeded/,
      )
      const {idToken: t} = await idToken(w.idp.issuer, {clientId: 'sshca-cli', login: 'alice@example.com'})
      const r = await sshca(['login', '--identity-token-file', '-'], {env: w.env, input: t})
      assert.equal(r.code, 0, r.stderr)
      const ok = await ssh({port: sshd.port, agentSocket: w.agent.socket, command: 'echo in'})
      assert.equal(ok.code, 0, ok.stderr)
      assert.equal(ok.stdout.trim(), 'in')
    } finally {
      await sshd.stop()
    }
  })
})
