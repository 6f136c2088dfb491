/**
 * Policy what-if on a recorded trail: real requests against a running CA (issued, and denied by the
 * policy) are replayed through a new ca.yaml, from the audit log and from the store, and the report
 * names exactly who gains, loses or is denied what.
 */
import assert from 'node:assert/strict'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {sshca} from '../helpers/cli.ts'
import {startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {startTestCa, writePolicy, type TestCa} from '../helpers/ca.ts'

interface Entry {
  subject: string
  kind: string
  gained: {principals: string[]; extensions: string[]; criticalOptions: string[]}
  lost: {principals: string[]; extensions: string[]; criticalOptions: string[]}
  ttlChange: number
  after: {issued: boolean; reason?: string; rule?: string}
}

describe('policy what-if: ca explain --config NEW.yaml --replay AUDIT.log | --since', function () {
  this.timeout(120_000)
  let gh: GithubIssuer
  let t: TestCa
  let newYaml: string

  const people = (rules: unknown[]) => [{name: 'people', type: 'oidc', issuer: gh.issuer, audience: 'sshca-ci', rules}]
  const staff = (o: {allow: string[]; ttl: string; extensions: string[]; match?: Record<string, unknown>}) => ({
    name: 'staff',
    match: {repository_owner: 'acme', ...o.match},
    certificate: {
      principals: ['${actor}'],
      principalsFrom: {claim: 'groups', allow: o.allow},
      keyId: '${actor}',
      ttl: o.ttl,
      extensions: o.extensions,
    },
  })
  const sign = async (claims: Record<string, unknown>) =>
    t.call('POST', '/ssh/sign', {
      publicKey: generatePrivateKey('ed25519').publicKey.blob.toString('base64'),
      ott: await gh.mint(claims),
      certType: 'user',
    })

  before(async () => {
    gh = await startGithubIssuer()
    t = await startTestCa({
      provisioners: people([staff({allow: ['ssh-*'], ttl: '8h', extensions: ['permit-pty']})]),
      limits: {rate: false},
    })
    // the recorded trail: two issuances and a policy denial
    assert.equal((await sign({sub: 'alice', actor: 'alice', groups: ['ssh-web', 'ssh-db']})).status, 201)
    assert.equal((await sign({sub: 'alice', actor: 'alice', groups: ['ssh-web', 'ssh-db']})).status, 201)
    assert.equal((await sign({sub: 'bob', actor: 'bob', groups: ['ssh-web']})).status, 201)
    assert.equal((await sign({sub: 'carol', actor: 'carol', repository_owner: 'evil', groups: []})).status, 403)
    // dave's group that grants him a principal is his 25th: a replay must see it as the CA did
    const many = [...Array.from({length: 24}, (_, i) => `team-${String(i).padStart(2, '0')}`), 'ssh-ops']
    assert.equal((await sign({sub: 'dave', actor: 'dave', groups: many})).status, 201)
    // the new policy: fewer groups, shorter lifetime, port forwarding, only alice on staff, a contractors rule
    newYaml = join(t.init.dir, 'new-ca.yaml')
    const current = readFileSync(t.init.config, 'utf8')
    writeFileSync(newYaml, current)
    await writePolicy(newYaml, {
      provisioners: people([
        staff({
          allow: ['ssh-web'],
          ttl: '4h',
          extensions: ['permit-pty', 'permit-port-forwarding'],
          match: {actor: ['alice']},
        }),
        {name: 'contractors', match: {repository_owner: 'evil'}, certificate: {principals: ['contractor'], ttl: '1h'}},
      ]),
    })
  })
  after(async () => {
    await t?.stop()
    await gh?.stop()
  })

  const bySubject = (doc: {changes: Entry[]}) => Object.fromEntries(doc.changes.map((c) => [c.subject, c]))

  it('--replay AUDIT.log: alice loses ssh-db and four hours and gains port forwarding, bob is denied, carol gets in', async () => {
    const r = await sshca(['ca', 'explain', '--config', newYaml, '--replay', t.auditFile, '--json'])
    assert.equal(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout) as {
      replayed: number
      distinct: number
      summary: Record<string, number>
      changes: Entry[]
    }
    assert.equal(doc.replayed, 5)
    assert.equal(doc.distinct, 4, "alice's two identical requests are one entry")
    assert.deepEqual(doc.summary, {unchanged: 0, changed: 1, newly_denied: 2, newly_allowed: 1, still_denied: 0})
    const c = bySubject(doc)
    assert.equal(c.alice!.kind, 'changed')
    assert.deepEqual(c.alice!.lost.principals, ['ssh-db'])
    assert.deepEqual(c.alice!.gained.principals, [])
    assert.deepEqual(c.alice!.gained.extensions, ['permit-port-forwarding'])
    assert.equal(c.alice!.ttlChange, -4 * 3600)
    assert.equal(c.bob!.kind, 'newly_denied')
    assert.deepEqual(c.bob!.lost.principals, ['bob', 'ssh-web'])
    assert.equal(c.bob!.after.reason, 'no_rule_matched')
    assert.deepEqual(c.dave!.lost.principals, ['dave', 'ssh-ops'])
    assert.equal(c.carol!.kind, 'newly_allowed')
    assert.deepEqual(c.carol!.gained.principals, ['contractor'])
    assert.equal(c.carol!.after.rule, 'contractors')
    // the report never carries a token
    assert.doesNotMatch(r.stdout, /eyJ[A-Za-z0-9_-]+\./)
  })

  it('--since from the store (issuances only), in text for people', async () => {
    const r = await sshca(['ca', 'explain', '--config', newYaml, '--ca-config', t.init.config, '--since', '1h'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /Replayed 4 recorded request\(s\) \(3 distinct\)/)
    assert.match(r.stdout, /0 unchanged, 1 changed, 2 newly DENIED, 0 newly allowed/)
    assert.match(r.stdout, /DENIED {2}?bob via people[\s\S]*- principals bob, ssh-web/)
    assert.match(
      r.stdout,
      /CHANGED alice via people[\s\S]*- principals ssh-db[\s\S]*\+ extensions permit-port-forwarding[\s\S]*lifetime 8h → 4h/,
    )
  })

  it('the same policy replayed changes nothing: dave keeps the principal of his 25th group', async () => {
    for (const from of [
      ['--replay', t.auditFile],
      ['--ca-config', t.init.config, '--since', '1h'],
    ]) {
      const r = await sshca(['ca', 'explain', '--config', t.init.config, ...from, '--json'])
      assert.equal(r.code, 0, r.stderr)
      const doc = JSON.parse(r.stdout)
      // a recorded claim cut to its first 20 groups made the same policy seem to take ssh-ops from dave
      assert.deepEqual(doc.changes, [], from[0])
      assert.equal(doc.summary.unchanged, 3, from[0])
    }
  })
})
