/** principalsFrom: one principal per admitted element of a group claim, always through the reserved-principal rule. */
import assert from 'node:assert/strict'
import {parseConfig} from '../../../src/ca/config/config.ts'
import {explain} from '../../../src/ca/authority/explain.ts'
import {
  buildCertificateSpec,
  DEFAULT_RESERVED_PRINCIPALS,
  MAX_GROUP_ELEMENTS,
  MAX_PRINCIPAL_LENGTH,
  policyClaims,
  principalsFromClaim,
} from '../../../src/ca/policy/policy.ts'

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
  // parsed in before(), not while the file loads: a test file that throws while loading is a crash to
  // Stryker, not a failing test
  let config: ReturnType<typeof parseConfig>['config']
  let warnings: string[]
  let sso: (typeof config.provisioners)[0]
  let groups: (typeof sso.rules)[0]
  let groupsOnly: (typeof sso.rules)[0]
  before(() => {
    ;({config, warnings} = parseConfig(YAML, 'ca.yaml'))
    sso = config.provisioners[0]!
    ;[groups, groupsOnly] = sso.rules as [(typeof sso.rules)[0], (typeof sso.rules)[0]]
  })
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

  it('a claim that is absent or null admits nothing and drops nothing; one text value counts as a list of one', () => {
    for (const g of [undefined, null])
      assert.deepEqual(principalsFromClaim({claim: 'groups', allow: ['*']}, {groups: g}, []), {
        claim: 'groups',
        granted: [],
        dropped: [],
      })
    assert.deepEqual(principalsFromClaim({claim: 'groups', allow: ['*']}, {groups: 'ops'}, []).granted, [
      {from: 'ops', principal: 'ops'},
    ])
  })

  it('any one allow pattern admits a group', () => {
    const out = principalsFromClaim({claim: 'groups', allow: ['ssh-*', 'ops']}, {groups: ['ops', 'ssh-web', 'hr']}, [])
    assert.deepEqual(
      out.granted.map((g) => g.principal),
      ['ops', 'ssh-web'],
    )
  })

  it('an IdP that sends thousands of groups: the first ones are looked at; what is dropped is cut short in the record', () => {
    const many = Array.from({length: MAX_GROUP_ELEMENTS + 50}, (_, i) => `ssh-g${i}`)
    const out = principalsFromClaim({claim: 'groups', allow: ['ssh-*']}, {groups: many}, [])
    assert.equal(out.granted.length, MAX_GROUP_ELEMENTS)
    assert.equal(out.granted.at(-1)!.from, `ssh-g${MAX_GROUP_ELEMENTS - 1}`)
    const long = 'x'.repeat(1000)
    const cut = principalsFromClaim(
      {claim: 'groups', allow: ['ssh-*'], map: {'ssh-long': `a${long}`}},
      {groups: [long, {a: long}, 'ssh-long']},
      [],
    )
    assert.deepEqual(
      cut.dropped.map((d) => [d.why, d.value.length]),
      [
        ['not_allowed', 200],
        ['not_text', 100],
        ['unsafe', 8],
      ],
    )
  })

  it('a principal of the longest length allowed is granted; one character more is unsafe', () => {
    const at = 'a'.repeat(MAX_PRINCIPAL_LENGTH)
    const out = principalsFromClaim(
      {claim: 'groups', allow: ['ssh-*'], map: {'ssh-at': at, 'ssh-over': `${at}b`}},
      {groups: ['ssh-at', 'ssh-over']},
      [],
    )
    assert.deepEqual(
      out.granted.map((g) => g.principal),
      [at],
    )
    assert.deepEqual(out.dropped, [{value: 'ssh-over', why: 'unsafe'}])
  })

  it('a certificate holds at most as many principals as a claim may give: one more is denied (principal_invalid)', () => {
    const names = (n: number) => Array.from({length: n}, (_, i) => `ssh-g${i}`)
    // the rule's own principal (ann) and MAX − 1 groups: MAX principals in all
    const fits = buildCertificateSpec(sso, groups, claims(names(MAX_GROUP_ELEMENTS - 1)), config.ssh, NOW)
    assert.equal(fits.principals.length, MAX_GROUP_ELEMENTS)
    assert.throws(() => buildCertificateSpec(sso, groups, claims(names(MAX_GROUP_ELEMENTS)), config.ssh, NOW), {
      code: 'ERR_POLICY_DENIED',
      reason: 'principal_invalid',
    })
  })

  it('a denial for no principal carries what was dropped, the first 20', () => {
    const hr = Array.from({length: 30}, (_, i) => `hr-${i}`)
    assert.throws(
      () => buildCertificateSpec(sso, groupsOnly, claims(hr, false), config.ssh, NOW),
      (err: {reason: string; details: {dropped: unknown[]}}) => {
        assert.equal(err.reason, 'no_principals')
        assert.deepEqual(
          err.details.dropped,
          hr.slice(0, 20).map((value) => ({value, why: 'not_allowed'})),
        )
        return true
      },
    )
  })

  it('the claims a provisioner reads (kept with each certificate for ca explain --since): match, templates and principalsFrom', () => {
    // sub: the default key ID template names it
    assert.deepEqual(policyClaims(sso).sort(), ['email', 'email_verified', 'groups', 'sub'])
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
