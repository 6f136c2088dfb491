import assert from 'node:assert/strict'
import {parseConfig, type CaConfig, type MatchCondition, type ProvisionerConfig} from '../../../src/ca/config/config.ts'
import {throwsCode} from '../../helpers/assert.ts'
import {ISSUE_YAML} from '../../helpers/issue-yaml.ts'
import {
  buildCertificateSpec,
  checkCondition,
  DEFAULT_RESERVED_PRINCIPALS,
  evaluateRule,
  compileGlob,
  renderTemplate,
  sanitizeLocalPart,
  selectRule,
} from '../../../src/ca/policy/policy.ts'

const NOW = 1_800_000_000
const limits = {maxUserTtl: 86400, reservedPrincipals: DEFAULT_RESERVED_PRINCIPALS}

describe('policy', () => {
  // parsed in before(), not in the describe() body: Stryker loads this file once and re-runs its tests
  let config: CaConfig
  let warnings: string[]
  let sso: ProvisionerConfig
  let ci: ProvisionerConfig
  before(() => {
    ;({config, warnings} = parseConfig(ISSUE_YAML, 'ca.yaml'))
    sso = config.provisioners[0]!
    ci = config.provisioners[1]!
  })

  it("accepts the issue's ca.yaml as written, with defaults merged", () => {
    assert.deepEqual(warnings, [])
    assert.equal(sso.audience, 'sshca-cli')
    assert.equal(ci.audience, 'sshca-ci')
    assert.equal(ci.maxTtl, 900)
    assert.equal(sso.rules[0]!.certificate.ttl, 28800)
    assert.equal(config.ssh.maxUserTtl, 86400)
    assert.equal(config.address, '127.0.0.1:9000')
  })

  it('issues the engineers rule for a verified example.com email', () => {
    const claims = {sub: 'u1', email: 'John.Doe@Example.com', email_verified: true}
    const {rule} = selectRule(sso, claims)
    const spec = buildCertificateSpec(sso, rule, claims, limits, NOW)
    assert.deepEqual(spec.principals, ['john.doe', 'John.Doe@Example.com'])
    assert.equal(spec.keyId, 'John.Doe@Example.com')
    assert.deepEqual(spec.extensions, {'permit-pty': true})
    assert.deepEqual(spec.criticalOptions, {})
    assert.equal(spec.validAfter, BigInt(NOW - 60))
    assert.equal(spec.validBefore, BigInt(NOW + 8 * 3600))
    // "+" is outside the safe set: the raw-email principal denies rather than being cleaned
    throwsCode(
      () => buildCertificateSpec(sso, rule, {...claims, email: 'j+ops@example.com'}, limits, NOW),
      'ERR_POLICY_DENIED',
      {reason: 'principal_invalid'},
    )
  })

  it('issues the deploy rule for the GitHub claim set, capped by maxTtl, with its options', () => {
    const claims = {
      repository: 'acme/app',
      ref: 'refs/heads/main',
      event_name: 'push',
      run_id: '1234567890',
      sub: 'repo:acme/app:ref:refs/heads/main',
    }
    const {rule} = selectRule(ci, claims)
    const spec = buildCertificateSpec(ci, rule, claims, limits, NOW)
    assert.deepEqual(spec.principals, ['deploy'])
    assert.equal(spec.keyId, 'gha:acme/app:1234567890')
    assert.deepEqual(spec.criticalOptions, {
      'force-command': '/usr/local/bin/deploy.sh',
      'source-address': '10.0.0.0/8',
    })
    assert.deepEqual(spec.extensions, {})
    assert.equal(spec.ttl, 600)
    const capped = buildCertificateSpec({...ci, maxTtl: 300}, rule, claims, limits, NOW)
    assert.equal(capped.ttl, 300)
    assert.equal(buildCertificateSpec(ci, rule, claims, {...limits, maxUserTtl: 120}, NOW).ttl, 120)
  })

  it('denies when no rule matches, naming the first failing condition in explain', () => {
    const claims = {repository: 'acme/app', ref: 'refs/heads/dev', event_name: 'push'}
    throwsCode(() => selectRule(ci, claims), 'ERR_POLICY_DENIED', {reason: 'no_rule_matched', provisioner: 'ci'})
    assert.deepEqual(evaluateRule(ci.rules[0]!, claims), {
      rule: 'deploy',
      matched: false,
      failed: 'ref is "refs/heads/dev", not "refs/heads/main"',
    })
  })

  it('denies when two rules match', () => {
    const p: ProvisionerConfig = {...ci, rules: [ci.rules[0]!, {...ci.rules[0]!, name: 'deploy-copy'}]}
    const claims = {repository: 'acme/app', ref: 'refs/heads/main', event_name: 'push', run_id: '1'}
    throwsCode(() => selectRule(p, claims), 'ERR_POLICY_DENIED', {
      reason: 'multiple_rules_matched',
      rules: ['deploy', 'deploy-copy'],
      provisioner: 'ci',
    })
  })

  it('never matches a claim the token lacks, whatever the condition', () => {
    for (const cond of [
      'x',
      ['x', 'y'],
      {domain: 'example.com'},
      {contains: 'x'},
      {glob: '*'},
      true,
    ] as MatchCondition[]) {
      assert.equal(checkCondition('missing', cond, {}), 'claim "missing" is absent')
      assert.equal(checkCondition('n', cond, {n: null}), 'claim "n" is absent')
    }
  })

  it('matches scalars exactly (types included), lists as any-of, domains, contains, globs', () => {
    assert.equal(checkCondition('v', true, {v: true}), undefined)
    assert.match(checkCondition('v', true, {v: 'true'})!, /not true/)
    assert.equal(checkCondition('v', 5, {v: 5}), undefined)
    assert.equal(checkCondition('e', ['push', 'workflow_dispatch'], {e: 'workflow_dispatch'}), undefined)
    assert.match(checkCondition('e', ['push'], {e: 'pull_request'})!, /not one of/)
    assert.equal(checkCondition('email', {domain: 'Example.COM'}, {email: 'a@example.com'}), undefined)
    assert.match(checkCondition('email', {domain: 'example.com'}, {email: 'a@example.com.evil.io'})!, /domain/)
    assert.match(checkCondition('email', {domain: 'example.com'}, {email: 'a@evil.io@example.co'})!, /domain/)
    assert.equal(checkCondition('groups', {contains: 'ops'}, {groups: ['dev', 'ops']}), undefined)
    assert.match(checkCondition('groups', {contains: 'ops'}, {groups: 'ops'})!, /not a list/)
    assert.equal(checkCondition('ref', {glob: 'refs/heads/release/*'}, {ref: 'refs/heads/release/1.2'}), undefined)
    assert.match(
      checkCondition('ref', {glob: 'refs/heads/release/*'}, {ref: 'refs/heads/release/a/b'})!,
      /does not match/,
    )
    assert.equal(checkCondition('ref', {glob: 'refs/heads/**'}, {ref: 'refs/heads/a/b'}), undefined)
  })

  it('escapes regex characters in globs', () => {
    assert.equal(compileGlob('a.b').test('axb'), false)
    assert.equal(compileGlob('a+b?').test('a+bc'), true)
  })

  it('sanitizes the email local part as step-ca does', () => {
    assert.equal(sanitizeLocalPart('John.Doe@example.com'), 'johndoe')
    assert.equal(sanitizeLocalPart('a+b_c-d@x'), 'a_b_c-d')
    assert.equal(sanitizeLocalPart('Ünïcode@x'), '_n_code')
    assert.equal(sanitizeLocalPart('x@y@z'), 'x_y')
  })

  it('renders templates and denies when a claim is absent or not text', () => {
    assert.equal(renderTemplate('gha:${repository}:${run_id}', {repository: 'a/b', run_id: 7}), 'gha:a/b:7')
    assert.equal(renderTemplate('${email.domain}', {email: 'x@Example.com'}), 'example.com')
    throwsCode(() => renderTemplate('${email}', {}), 'ERR_POLICY_DENIED', {reason: 'claim_missing', claim: 'email'})
    throwsCode(() => renderTemplate('${groups}', {groups: ['a']}), 'ERR_POLICY_DENIED', {reason: 'claim_missing'})
  })

  it('denies a principal that renders "root\\nfoo" or "a,b" instead of cleaning it', () => {
    const p: ProvisionerConfig = {
      ...sso,
      rules: [{...sso.rules[0]!, certificate: {...sso.rules[0]!.certificate, principals: ['${name}']}}],
    }
    for (const name of ['root\nfoo', 'a,b', 'a b', '', 'x'.repeat(257)]) {
      const claims = {email: 'a@example.com', email_verified: true, name}
      throwsCode(() => buildCertificateSpec(p, p.rules[0]!, claims, limits, NOW), 'ERR_POLICY_DENIED', {
        reason: 'principal_invalid',
      })
    }
    const k: ProvisionerConfig = {
      ...sso,
      rules: [{...sso.rules[0]!, certificate: {...sso.rules[0]!.certificate, keyId: '${name}'}}],
    }
    throwsCode(
      () => buildCertificateSpec(k, k.rules[0]!, {email: 'a@example.com', name: 'x\ny'}, limits, NOW),
      'ERR_POLICY_DENIED',
      {reason: 'key_id_invalid'},
    )
  })

  it('ignores disabled rules', () => {
    const p: ProvisionerConfig = {...ci, rules: [{...ci.rules[0]!, disabled: true}]}
    throwsCode(
      () => selectRule(p, {repository: 'acme/app', ref: 'refs/heads/main', event_name: 'push'}),
      'ERR_POLICY_DENIED',
      {reason: 'no_rule_matched'},
    )
  })
})
