/** principalsFrom: one principal per admitted element of a group claim, always through the reserved-principal rule. */
import assert from 'node:assert/strict'
import {parseConfig} from '../../../src/ca/config/config.ts'
import {explain} from '../../../src/ca/authority/explain.ts'
import {buildCertificateSpec, DEFAULT_RESERVED_PRINCIPALS, principalsFromClaim} from '../../../src/ca/policy/policy.ts'

const YAML = `
provisioners:
  - name: sso
    type: oidc
    issuer: https://idp.example.com
    clientId: sshca-cli
    rules:
      - name: groups
        match: { email_verified: true }
        certificate:
          principals: ["\${email.local}"]
          principalsFrom: { claim: groups, allow: ["ssh-*"], map: { "ssh-admins": "admin", "ssh-ops": "ops" } }
          ttl: 8h
      - name: groups-only
        match: { email_verified: false }
        certificate:
          principalsFrom: { claim: groups, allow: ["ssh-*"] }
          ttl: 1h
`
const NOW = 1_800_000_000

describe('principalsFrom: principals from group claims', () => {
  const {config, warnings} = parseConfig(YAML, 'ca.yaml')
  const sso = config.provisioners[0]!
  const [groups, groupsOnly] = sso.rules as [(typeof sso.rules)[0], (typeof sso.rules)[0]]
  const claims = (g: unknown, verified = true) => ({
    sub: '1',
    email: 'ann@example.com',
    email_verified: verified,
    groups: g,
  })

  it('renders one principal per admitted element, renamed by map; others are ignored', () => {
    const spec = buildCertificateSpec(
      sso,
      groups,
      claims(['ssh-ops', 'ssh-web', 'finance', 'ssh-web']),
      config.ssh,
      NOW,
    )
    assert.deepEqual(spec.principals, ['ann', 'ops', 'ssh-web'])
    assert.deepEqual(spec.principalsFrom!.granted, [
      {from: 'ssh-ops', principal: 'ops'},
      {from: 'ssh-web', principal: 'ssh-web'},
      {from: 'ssh-web', principal: 'ssh-web'},
    ])
    assert.deepEqual(spec.principalsFrom!.dropped, [{value: 'finance', why: 'not_allowed'}])
  })

  it('a group mapped to a reserved principal (admin, by default) is dropped, never granted — and check-config says so', () => {
    const spec = buildCertificateSpec(sso, groups, claims(['ssh-admins', 'ssh-web']), config.ssh, NOW)
    assert.ok(!spec.principals.includes('admin'))
    assert.deepEqual(spec.principalsFrom!.dropped, [{value: 'ssh-admins', why: 'reserved'}])
    assert.ok(
      warnings.some((w) => /"ssh-admins" → "admin" is a reserved principal/.test(w)),
      warnings.join('\n'),
    )
  })

  it('the attack: a group named after root or another reserved account, or with unsafe characters, grants nothing', () => {
    const out = principalsFromClaim(
      {claim: 'groups', allow: ['*']},
      {groups: ['root', 'ssh-x', 'a b', 'x,y', 'ok\n', 42]},
      DEFAULT_RESERVED_PRINCIPALS,
    )
    assert.deepEqual(
      out.granted.map((g) => g.principal),
      ['ssh-x'],
    )
    assert.deepEqual(
      out.dropped.map((d) => d.why),
      ['reserved', 'unsafe', 'unsafe', 'unsafe', 'not_text'],
    )
    // the mapping cannot be used to reach root either
    const mapped = principalsFromClaim(
      {claim: 'groups', allow: ['ssh-*'], map: {'ssh-root': 'root'}},
      {groups: ['ssh-root']},
      DEFAULT_RESERVED_PRINCIPALS,
    )
    assert.deepEqual(mapped.granted, [])
  })

  it('a rule with only principalsFrom denies (no_principals) when no element is admitted, or the claim is absent', () => {
    for (const g of [['finance'], [], undefined]) {
      assert.throws(() => buildCertificateSpec(sso, groupsOnly, claims(g, false), config.ssh, NOW), {
        code: 'ERR_POLICY_DENIED',
        reason: 'no_principals',
      })
    }
    assert.deepEqual(buildCertificateSpec(sso, groupsOnly, claims('ssh-one', false), config.ssh, NOW).principals, [
      'ssh-one',
    ])
  })

  it('explain shows what each group became', () => {
    const r = explain(
      config,
      {...claims(['ssh-ops', 'ssh-admins', 'hr']), iss: 'https://idp.example.com', aud: 'sshca-cli'},
      undefined,
      NOW,
    )
    assert.equal(r.decision.issued, true)
    if (!r.decision.issued) return
    assert.deepEqual(r.decision.certificate.principals, ['ann', 'ops'])
    assert.deepEqual(r.decision.principalsFrom, {
      claim: 'groups',
      granted: [{from: 'ssh-ops', principal: 'ops'}],
      dropped: [
        {value: 'ssh-admins', why: 'reserved'},
        {value: 'hr', why: 'not_allowed'},
      ],
    })
  })

  it('check-config: a rule needs principals or principalsFrom; an allow of "*" and a user-chosen claim are warned about', () => {
    assert.throws(
      () => parseConfig(YAML.replace('principalsFrom: { claim: groups, allow: ["ssh-*"] }', 'keyId: x'), 'ca.yaml'),
      /at least one principal/,
    )
    const {warnings: w} = parseConfig(
      YAML.replace('allow: ["ssh-*"] }\n          ttl: 1h', 'allow: ["*"] }\n          ttl: 1h').replace(
        'claim: groups, allow: ["ssh-*"], map',
        'claim: preferred_username, allow: ["ssh-*"], map',
      ),
      'ca.yaml',
    )
    assert.ok(w.some((x) => /admits every group/.test(x)))
    assert.ok(w.some((x) => /chosen by the user/.test(x)))
  })
})
