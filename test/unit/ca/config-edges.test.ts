/**
 * ca.yaml's checks, each one a mutation-testing survivor (issue 18): a check that could be deleted
 * with every test still passing. A problem is asserted by the field it names (its code and place),
 * and the same file without the fault must be accepted, so the check cannot pass by refusing all.
 */
import assert from 'node:assert/strict'
import {isCiProvisioner, LIMIT_DEFAULTS, mayOverlap, parseConfig} from '../../../src/ca/config/config.ts'
import {DEFAULT_RESERVED_PRINCIPALS} from '../../../src/ca/policy/policy.ts'

/** The fields ca.yaml's problems name ("provisioners[0].rules[1].name"), or [] when it is accepted. */
function problemFields(yaml: string): string[] {
  try {
    parseConfig(yaml, 'ca.yaml')
    return []
  } catch (err) {
    assert.equal((err as {code: string}).code, 'ERR_CA_CONFIG')
    return (err as {details: {problems: string[]}}).details.problems.map((p) => p.slice(0, p.indexOf(':')))
  }
}
const warnings = (yaml: string): string[] => parseConfig(yaml, 'ca.yaml').warnings

interface Rule {
  name?: string
  match?: string
  certificate?: string
}
const rule = (r: Rule = {}) =>
  `{name: ${r.name ?? 'r'}, match: ${r.match ?? '{email_verified: true, email: {domain: example.com}}'}, certificate: {principals: [alice], ttl: 1h${r.certificate ?? ''}}}`
const provisioner = (o: {extra?: string; rules?: string[]; issuer?: string; name?: string} = {}) =>
  `  - {name: ${o.name ?? 'p'}, type: oidc, issuer: "${o.issuer ?? 'https://idp.example.com'}", clientId: c${o.extra ?? ''}, rules: [${(o.rules ?? [rule()]).join(', ')}]}\n`
const yaml = (...provisioners: string[]) => `provisioners:\n${provisioners.join('')}`

describe("ca.yaml: what an empty file means, and the schema's limits", () => {
  it('an empty ca.yaml is a CA on loopback that issues nothing, with finite limits everywhere', () => {
    for (const text of ['{}', '', 'provisioners:\n']) {
      const {dir, path, ...config} = parseConfig(text, '/etc/sshca/ca.yaml').config
      assert.deepEqual([dir, path], ['/etc/sshca', '/etc/sshca/ca.yaml'])
      assert.deepEqual(
        config,
        {
          address: '127.0.0.1:9000',
          dnsNames: ['127.0.0.1'],
          name: 'sshca',
          disabled: false,
          db: {type: 'sqlite', path: 'db/sshca.sqlite', durability: 'full'},
          audit: {file: '-'},
          limits: {
            requestTimeout: 10,
            headersTimeout: 5,
            idleTimeout: 60,
            handshakeTimeout: 5,
            maxConnections: 1000,
            maxEventLoopDelay: 200,
            rate: {max: 300, window: 60},
          },
          trustProxy: false,
          tls: {clientCertificates: 'off'},
          keys: {kms: 'file', timeout: 10},
          ssh: {
            hostPattern: '*',
            maxUserTtl: 86400,
            hostTtl: 30 * 86400,
            maxHostTtl: 90 * 86400,
            reservedPrincipals: DEFAULT_RESERVED_PRINCIPALS,
          },
          provisioners: [],
        },
        JSON.stringify(text),
      )
    }
    assert.deepEqual(LIMIT_DEFAULTS.rate, {max: 300, window: 60})
    // a block given in part keeps the defaults of the rest
    const partial = parseConfig(
      'limits: {maxInFlight: 8}\nssh: {hostPattern: "*.corp"}\ndb: {type: sqlite}',
      'ca.yaml',
    ).config
    assert.deepEqual(
      [
        partial.limits.requestTimeout,
        partial.limits.rate,
        partial.ssh.maxUserTtl,
        partial.ssh.reservedPrincipals,
        partial.db,
      ],
      [
        10,
        {max: 300, window: 60},
        86400,
        DEFAULT_RESERVED_PRINCIPALS,
        {type: 'sqlite', path: 'db/sshca.sqlite', durability: 'full'},
      ],
    )
    assert.equal(parseConfig('limits: {rate: false}', 'ca.yaml').config.limits.rate, false)
    const inner = parseConfig('ssh: {maxUserTtl: 1h}\naudit: {}\nlimits: {}', 'ca.yaml').config
    assert.deepEqual(
      [
        inner.ssh.hostPattern,
        inner.ssh.hostTtl,
        inner.ssh.maxHostTtl,
        inner.audit.file,
        inner.limits.maxEventLoopDelay,
      ],
      ['*', 30 * 86400, 90 * 86400, '-', 200],
    )
  })

  it('durations: text or whole seconds; anything else names the field', () => {
    const ttl = (v: string) =>
      parseConfig(yaml(provisioner({rules: [rule().replace('ttl: 1h', `ttl: ${v}`)]})), 'ca.yaml').config
        .provisioners[0]!.rules[0]!.certificate.ttl
    assert.deepEqual([ttl('3600'), ttl('90s'), ttl('15m'), ttl('2h'), ttl('1d')], [3600, 90, 900, 7200, 86400])
    for (const bad of ['0', '-5', '1.5', '8x', '""', 'true'])
      assert.deepEqual(
        problemFields(yaml(provisioner({rules: [rule().replace('ttl: 1h', `ttl: ${bad}`)]}))),
        ['provisioners[0].rules[0].certificate.ttl'],
        bad,
      )
    assert.equal(
      parseConfig(yaml(provisioner({extra: ', maxTokenAge: 10m'})), 'ca.yaml').config.provisioners[0]!.maxTokenAge,
      600,
    )
  })

  it('names: 1 to 64 of letters, digits, ".", "_", "-", anchored at both ends', () => {
    for (const bad of ['"ab!"', '"!ab"', '"a b"', '""', `"${'a'.repeat(65)}"`]) {
      assert.deepEqual(problemFields(yaml(provisioner({name: bad}))), ['provisioners[0].name'], bad)
      assert.deepEqual(
        problemFields(yaml(provisioner({rules: [rule({name: bad})]}))),
        ['provisioners[0].rules[0].name'],
        bad,
      )
    }
    assert.deepEqual(problemFields(yaml(provisioner({name: 'a'.repeat(64), rules: [rule({name: 'r.1_x-Y'})]}))), [])
  })

  it('conditions: non-empty any-of lists, domains and globs; contains a scalar; nothing else', () => {
    // refused at the condition (zod may name a field inside it), and nowhere else
    const refused = (match: string) => {
      const f = problemFields(yaml(provisioner({rules: [rule({match: `{sub: x, ${match}}`})]})))
      return f.length > 0 && f.every((x) => x.startsWith('provisioners[0].rules[0].match.e'))
    }
    for (const bad of [
      'e: []',
      'e: {glob: ""}',
      'e: {domain: ""}',
      'e: {contains: [a]}',
      'e: {regex: ".*"}',
      'e: {glob: "a*", domain: x}',
    ])
      assert.ok(refused(bad), bad)
    for (const ok of [
      'e: [push]',
      'e: {contains: ops}',
      'e: {contains: 5}',
      'e: {glob: "a*"}',
      'e: {domain: x.com}',
      'e: 5',
      'e: true',
    ]) {
      assert.deepEqual(problemFields(yaml(provisioner({rules: [rule({match: `{sub: x, ${ok}}`})]}))), [], ok)
    }
  })

  it('a certificate grants at least one non-empty principal; source addresses and force-command are non-empty', () => {
    const c = (r: string) => problemFields(yaml(provisioner({rules: [r]})))
    // neither principals nor principalsFrom: the certificate as a whole grants nothing
    assert.deepEqual(c(rule().replace('principals: [alice]', 'principals: []')), [
      'provisioners[0].rules[0].certificate',
    ])
    assert.deepEqual(c(rule().replace('principals: [alice]', 'principals: [""]')), [
      'provisioners[0].rules[0].certificate.principals[0]',
    ])
    assert.deepEqual(c(rule({certificate: ', sourceAddress: []'})), [
      'provisioners[0].rules[0].certificate.sourceAddress',
    ])
    assert.deepEqual(c(rule({certificate: ', forceCommand: ""'})), [
      'provisioners[0].rules[0].certificate.forceCommand',
    ])
    assert.deepEqual(c(rule({certificate: ', keyId: ""'})), ['provisioners[0].rules[0].certificate.keyId'])
    assert.deepEqual(c(rule({certificate: ', whatever: 1'})), ['provisioners[0].rules[0].certificate'])
    const r = parseConfig(yaml(provisioner()), 'ca.yaml').config.provisioners[0]!.rules[0]!
    assert.deepEqual([r.disabled, r.certificate.keyId, r.certificate.extensions], [false, '${sub}', []])
    assert.deepEqual(problemFields('provisioners: [{name: p, type: saml, issuer: "https://i", clientId: c}]'), [
      'provisioners[0].type',
    ])
    assert.deepEqual(
      parseConfig('provisioners: [{name: p, type: oidc, issuer: "https://i.example", clientId: c}]', 'ca.yaml').config
        .provisioners[0]!.rules,
      [],
    )
    assert.deepEqual(problemFields('ssh: {hostPattern: ""}'), ['ssh.hostPattern'])
    assert.deepEqual(problemFields('dnsNames: [""]'), ['dnsNames[0]'])
  })
})

describe('ca.yaml checks that guard the policy', () => {
  it('the baseline file is accepted without warnings', () => {
    assert.deepEqual(problemFields(yaml(provisioner())), [])
    assert.deepEqual(warnings(yaml(provisioner())), [])
  })

  it('a rule with match: {} (it would match every token) is refused', () => {
    assert.deepEqual(problemFields(yaml(provisioner({rules: [rule({match: '{}'})]}))), [
      'provisioners[0].rules[0].match',
    ])
    assert.deepEqual(problemFields(yaml(provisioner({rules: [rule({match: '{sub: x}'})]}))), [])
  })

  it('two rules of one provisioner with one name are refused; the same name in two provisioners is fine', () => {
    assert.deepEqual(
      problemFields(yaml(provisioner({rules: [rule({match: '{sub: a}'}), rule({match: '{sub: b}'})]}))),
      ['provisioners[0].rules[1].name'],
    )
    assert.deepEqual(
      problemFields(yaml(provisioner({rules: [rule({match: '{sub: a}'}), rule({name: 'r2', match: '{sub: b}'})]}))),
      [],
    )
    const two = yaml(
      provisioner({rules: [rule({match: '{sub: a}'})]}),
      provisioner({name: 'q', issuer: 'https://other.example.com', rules: [rule({match: '{sub: a}'})]}),
    )
    assert.deepEqual(problemFields(two), [])
  })

  it('a force-command of more than one line (CR, LF or NUL) is refused', () => {
    for (const cmd of ['"/bin/a\\n/bin/b"', '"/bin/a\\r/bin/b"', '"/bin/a\\0b"', '"a\\n"']) {
      assert.deepEqual(
        problemFields(yaml(provisioner({rules: [rule({certificate: `, forceCommand: ${cmd}`})]}))),
        ['provisioners[0].rules[0].certificate.forceCommand'],
        cmd,
      )
    }
    assert.deepEqual(
      problemFields(yaml(provisioner({rules: [rule({certificate: ', forceCommand: "/bin/deploy --now"'})]}))),
      [],
    )
  })

  it('listenAddress must be a loopback address with a port', () => {
    for (const a of [
      '0.0.0.0:10000',
      '10.0.0.1:10000',
      'localhost:10000',
      '127.0.0.1',
      '[::]:10000',
      '127.0.0.1:99999',
    ]) {
      assert.deepEqual(
        problemFields(yaml(provisioner({extra: `, listenAddress: "${a}"`}))),
        ['provisioners[0].listenAddress'],
        a,
      )
    }
    for (const a of ['127.0.0.1:10000', '[::1]:10000', '127.0.0.2:0'])
      assert.deepEqual(problemFields(yaml(provisioner({extra: `, listenAddress: "${a}"`}))), [], a)
  })

  it('an issuer that is neither https nor loopback http is refused; loopback http is a warning', () => {
    assert.deepEqual(problemFields(yaml(provisioner({issuer: 'ftp://idp.example.com'}))), ['provisioners[0].issuer'])
    assert.deepEqual(problemFields(yaml(provisioner({issuer: 'http://idp.example.com'}))), ['provisioners[0].issuer'])
    assert.deepEqual(problemFields(yaml(provisioner({issuer: 'http://127.0.0.1:8080'}))), [])
    assert.equal(warnings(yaml(provisioner({issuer: 'http://127.0.0.1:8080'}))).length, 1)
  })

  it('provisioners are told apart by issuer and audience, a trailing "/" on the issuer included', () => {
    const twice = yaml(provisioner(), provisioner({name: 'q', issuer: 'https://idp.example.com/'}))
    assert.deepEqual(problemFields(twice), ['provisioners[1]'])
    assert.deepEqual(problemFields(yaml(provisioner(), provisioner({name: 'q', extra: ', audience: other'}))), [])
    // audience defaults to clientId; a provisioner with neither is refused
    assert.equal(parseConfig(yaml(provisioner()), 'ca.yaml').config.provisioners[0]!.audience, 'c')
    assert.equal(
      parseConfig(yaml(provisioner({extra: ', audience: aud'})), 'ca.yaml').config.provisioners[0]!.audience,
      'aud',
    )
    assert.deepEqual(problemFields(yaml(provisioner()).replace(', clientId: c', '')), ['provisioners[0]'])
  })

  it('"**" must stand for a whole path segment in a glob', () => {
    for (const g of ['refs/**main', 'a**', '**main', 'a**/b', '***', 'x/***/y']) {
      assert.deepEqual(
        problemFields(yaml(provisioner({rules: [rule({match: `{sub: x, ref: {glob: "${g}"}}`})]}))),
        ['provisioners[0].rules[0].match.ref'],
        g,
      )
    }
    for (const g of ['refs/**', '**/main', '**', 'refs/*/main', 'a/**/b']) {
      assert.deepEqual(
        problemFields(yaml(provisioner({rules: [rule({match: `{sub: x, ref: {glob: "${g}"}}`})]}))),
        [],
        g,
      )
    }
  })

  it('a template with a broken placeholder is refused in principals and in the key ID', () => {
    assert.deepEqual(
      problemFields(
        yaml(provisioner({rules: [rule().replace('principals: [alice]', 'principals: [alice, "${email.bad}"]')]})),
      ),
      ['provisioners[0].rules[0].certificate.principals[1]'],
    )
    assert.deepEqual(problemFields(yaml(provisioner({rules: [rule({certificate: ', keyId: "${sub"'})]}))), [
      'provisioners[0].rules[0].certificate.keyId',
    ])
  })

  it('ceilings: headersTimeout ≤ requestTimeout and hostTtl ≤ maxHostTtl (equal is fine)', () => {
    assert.deepEqual(problemFields('limits: {headersTimeout: 11s, requestTimeout: 10s}'), ['limits.headersTimeout'])
    assert.deepEqual(problemFields('limits: {headersTimeout: 10s, requestTimeout: 10s}'), [])
    assert.deepEqual(problemFields('ssh: {hostTtl: 91d, maxHostTtl: 90d}'), ['ssh.hostTtl'])
    assert.deepEqual(problemFields('ssh: {hostTtl: 90d, maxHostTtl: 90d}'), [])
  })

  it('trustProxy: every listed entry must be an address or CIDR; true is a warning', () => {
    assert.deepEqual(problemFields('trustProxy: [10.0.0.1, balancer.internal, 10.0.0.0/8]'), ['trustProxy[1]'])
    assert.deepEqual(problemFields('trustProxy: [10.0.0.1, "fd00::/8"]'), [])
    assert.equal(warnings('trustProxy: true').filter((w) => w.startsWith('trustProxy')).length, 1)
    assert.equal(warnings('trustProxy: 1').filter((w) => w.startsWith('trustProxy')).length, 0)
  })

  it('every problem is reported at once, not only the first', () => {
    const many = yaml(
      provisioner({
        extra: ', listenAddress: "0.0.0.0:1"',
        rules: [rule({match: '{}', certificate: ', forceCommand: "a\\nb"'})],
      }),
    )
    assert.deepEqual(problemFields(many).sort(), [
      'provisioners[0].listenAddress',
      'provisioners[0].rules[0].certificate.forceCommand',
      'provisioners[0].rules[0].match',
    ])
  })
})

describe('ca.yaml warnings about rules that grant more than meant', () => {
  const has = (w: string[], re: RegExp) => w.some((x) => re.test(x))

  it('{domain} without email_verified: true is warned about; with it, not', () => {
    assert.ok(
      has(
        warnings(yaml(provisioner({rules: [rule({match: '{email: {domain: example.com}}'})]}))),
        /^provisioners\[0\]\.rules\[0\] \(r\)/,
      ),
    )
    assert.ok(
      has(
        warnings(yaml(provisioner({rules: [rule({match: '{email_verified: "true", email: {domain: example.com}}'})]}))),
        /^provisioners\[0\]\.rules\[0\] \(r\)/,
      ),
    )
    assert.deepEqual(warnings(yaml(provisioner())), [])
  })

  it('a principal rendered from an email the rule does not require verified is warned about; with email_verified: true, not', () => {
    // the rule matches on groups, so a person who sets their address to bob@example.com at the IdP
    // (unverified: many IdPs let a user edit it) gets "bob", someone else's account
    const w = (match: string, principals: string) =>
      warnings(
        yaml(provisioner({rules: [rule({match}).replace('principals: [alice]', `principals: ${principals}`)]})),
      ).filter(
        (x) => x.startsWith('provisioners[0].rules[0].certificate.principals[0]') && x.includes('email_verified'),
      )
    assert.equal(w('{groups: {contains: eng}}', '["${email.local}"]').length, 1)
    assert.equal(w('{groups: {contains: eng}}', '["${email}"]').length, 1)
    assert.equal(w('{groups: {contains: eng}, email_verified: "true"}', '["${email.local}"]').length, 1)
    assert.equal(w('{groups: {contains: eng}, email_verified: true}', '["${email.local}"]').length, 0)
    assert.equal(w('{groups: {contains: eng}}', '["${sub}"]').length, 0)
    // the address taken whole as a principal (principalsFrom), not through a template: the same
    const from = (match: string) =>
      warnings(
        yaml(
          provisioner({
            rules: [
              `{name: r, match: ${match}, certificate: {ttl: 1h, principalsFrom: {claim: email, allow: ["*@example.com"]}}}`,
            ],
          }),
        ),
      ).filter(
        (x) =>
          x.startsWith('provisioners[0].rules[0].certificate.principalsFrom.claim') && x.includes('email_verified'),
      )
    assert.equal(from('{groups: {contains: eng}}').length, 1)
    assert.equal(from('{groups: {contains: eng}, email_verified: true}').length, 0)
  })

  it('a CI rule must pin the repository (or sub); a wildcard glob does not pin', () => {
    const gh = (match: string) =>
      warnings(
        yaml(provisioner({issuer: 'https://token.actions.githubusercontent.com', rules: [rule({match})]})),
      ).filter((w) => w.startsWith('provisioners[0].rules[0] (r)'))
    assert.equal(gh('{ref: refs/heads/main}').length, 1)
    assert.equal(gh('{ref: refs/heads/main, repository: {glob: "**"}}').length, 1)
    assert.equal(gh('{ref: refs/heads/main, repository: {glob: "*/*"}}').length, 1)
    assert.equal(gh('{ref: refs/heads/main, repository: {glob: "acme/*"}}').length, 0)
    assert.equal(gh('{ref: refs/heads/main, sub: "repo:acme/app:ref:refs/heads/main"}').length, 0)
    assert.equal(gh('{ref: refs/heads/main, repository_owner: acme}').length, 0)
    // a provisioner without a client id is a machine one whatever its issuer
    assert.equal(isCiProvisioner({issuer: 'https://idp.example.com', clientId: undefined}), true)
    assert.equal(isCiProvisioner({issuer: 'https://idp.example.com', clientId: 'c'}), false)
    assert.equal(isCiProvisioner({issuer: 'https://gitlab.com', clientId: 'c'}), true)
    assert.equal(isCiProvisioner({issuer: 'https://gitlab.com.evil.io', clientId: 'c'}), false)
    assert.equal(isCiProvisioner({issuer: 'https://token.actions.githubusercontent.com.evil.io', clientId: 'c'}), false)
  })

  it('a CI rule whose glob leaves the owner open does not pin: mallory/app, acme-evil/app and repo:mallory/… match it', () => {
    const gh = (match: string) =>
      warnings(
        yaml(provisioner({issuer: 'https://token.actions.githubusercontent.com', rules: [rule({match})]})),
      ).filter((w) => w.startsWith('provisioners[0].rules[0] (r)') && w.includes('pins neither'))
    assert.equal(gh('{ref: refs/heads/main, repository: {glob: "*/app"}}').length, 1)
    assert.equal(gh('{ref: refs/heads/main, repository: {glob: "acme*/app"}}').length, 1)
    assert.equal(gh('{ref: refs/heads/main, repository_owner: {glob: "acme*"}}').length, 1)
    assert.equal(gh('{ref: refs/heads/main, sub: {glob: "repo:*/app:ref:refs/heads/main"}}').length, 1)
    assert.equal(gh('{ref: refs/heads/main, job_workflow_ref: {glob: "**/deploy.yml@refs/heads/main"}}').length, 1)
    // a reusable workflow written out pins the workflow, not its caller: any repository may call a public one
    assert.equal(
      gh('{ref: refs/heads/main, job_workflow_ref: acme/deploy/.github/workflows/deploy.yml@refs/heads/main}').length,
      1,
    )
    assert.equal(
      gh(
        '{ref: refs/heads/main, repository_owner: acme, job_workflow_ref: acme/deploy/.github/workflows/deploy.yml@refs/heads/main}',
      ).length,
      0,
    )
    // the owner written out: pinned
    assert.equal(gh('{ref: refs/heads/main, repository: {glob: "acme/*"}}').length, 0)
    assert.equal(gh('{ref: refs/heads/main, sub: {glob: "repo:acme/app:*"}}').length, 0)
    assert.equal(gh('{ref: refs/heads/main, repository_owner: {glob: "acme"}}').length, 0)
  })

  it("principals from claims the user chooses, step's lossy sanitizing, and literal reserved accounts are warned about", () => {
    const w = (principals: string) =>
      warnings(yaml(provisioner({rules: [rule().replace('principals: [alice]', `principals: ${principals}`)]})))
    assert.equal(w('["${preferred_username}"]').length, 1)
    assert.equal(w('["${email.local|step}"]').length, 1)
    assert.equal(w('[root]').length, 1)
    assert.equal(w('[ubuntu]').length, 1)
    assert.equal(w('["${email.local}", alice]').length, 0)
  })

  it('${email.local} without the email domain pinned is warned about: alice@ of any domain would get alice', () => {
    const w = (match: string, principals: string) =>
      warnings(yaml(provisioner({rules: [rule({match}).replace('principals: [alice]', `principals: ${principals}`)]})))
    const open = w('{email_verified: true, groups: {contains: ssh}}', '["${email.local}"]')
    assert.equal(open.length, 1, open.join('\n'))
    assert.match(
      open[0]!,
      /^provisioners\[0\]\.rules\[0\]\.certificate\.principals\[0\]: "\$\{email\.local\}" renders the local part of email but the rule does not pin its domain/,
    )
    // a list of domains is no pin either: the list is any-of
    assert.equal(w('{email_verified: true, email: [a@x.com, b@y.com]}', '["${email.local}"]').length, 1)
    assert.deepEqual(w('{email_verified: true, email: {domain: example.com}}', '["${email.local}"]'), [])
    assert.deepEqual(w('{email_verified: true, groups: {contains: ssh}}', '["${email.domain}", alice]'), [])
  })

  it('one ${email.local} template for two pinned domains (two rules, two provisioners): warned, the same person twice', () => {
    const staff = rule({name: 'staff'}).replace('principals: [alice]', 'principals: ["${email.local}"]')
    const contractors = (principals: string) =>
      rule({name: 'contractors', match: '{email_verified: true, email: {domain: Agency.io}}'}).replace(
        'principals: [alice]',
        `principals: ${principals}`,
      )
    const two = warnings(yaml(provisioner({rules: [staff, contractors('["${email.local}"]')]})))
    assert.deepEqual(two, [
      'principals: "${email.local}" is rendered for addresses in example.com (p/staff) and agency.io (p/contractors): alice@ of each domain gets the same principal, two people one account; give each domain a template of its own (for example a prefix, "c-${email.local}")',
    ])
    const across = warnings(
      yaml(
        provisioner({rules: [staff]}),
        provisioner({name: 'okta', issuer: 'https://okta.example.com', rules: [contractors('["${email.local}"]')]}),
      ),
    )
    assert.equal(across.length, 1)
    assert.match(across[0]!, /example\.com \(p\/staff\) and agency\.io \(okta\/contractors\)/)
    // a template of its own per domain, or the same domain twice: no collision
    assert.deepEqual(warnings(yaml(provisioner({rules: [staff, contractors('["c-${email.local}"]')]}))), [])
    const sameDomain = rule({
      name: 'admins',
      match: '{email_verified: true, email: {domain: example.com}, groups: {contains: a}}',
    })
    assert.deepEqual(
      warnings(
        yaml(
          provisioner({rules: [staff, sameDomain.replace('principals: [alice]', 'principals: ["${email.local}"]')]}),
        ),
      ).filter((x) => x.startsWith('principals:')),
      [],
    )
  })

  it('a provisioner without rules denies everything: a warning, not a problem', () => {
    assert.deepEqual(problemFields(yaml(provisioner({rules: []}))), [])
    assert.equal(warnings(yaml(provisioner({rules: []}))).length, 1)
    assert.equal(warnings('{}').length, 1)
  })

  it('overlap is judged only between enabled rules, and only where they could both match', () => {
    const two = (a: string, b: string, disabled = '') =>
      warnings(yaml(provisioner({rules: [rule({name: 'a', match: a}), rule({name: 'b', match: `${b}${disabled}`})]})))
    assert.equal(two('{sub: x}', '{sub: x}').length, 1)
    assert.equal(two('{sub: x}', '{sub: y}').length, 0)
    assert.equal(two('{sub: x}', '{iss: y}').length, 1, 'no shared claim: one token can carry both')
    assert.equal(
      warnings(
        yaml(
          provisioner({
            rules: [
              rule({name: 'a', match: '{sub: x}'}),
              `{name: b, disabled: true, match: {sub: x}, certificate: {principals: [alice], ttl: 1h}}`,
            ],
          }),
        ),
      ).length,
      0,
    )
    assert.equal(mayOverlap({domain: 'X.com'}, {domain: 'x.COM'}), true)
    assert.equal(mayOverlap({domain: 'x.com'}, 'u@y.com'), false)
    assert.equal(mayOverlap('U@X.COM', {domain: 'x.com'}), true)
    assert.equal(mayOverlap(5, {glob: '*'}), false)
    assert.equal(mayOverlap(['refs/tags/v1', 'refs/heads/a'], {glob: 'refs/heads/*'}), true)
    assert.equal(mayOverlap({glob: 'a'}, {domain: 'x.com'}), true)
    assert.equal(mayOverlap({contains: 'x'}, {contains: 'y'}), true)
  })

  it('each claim that names the repository pins a CI rule; each claim a person picks is warned about as a principal', () => {
    const gh = (match: string) =>
      warnings(
        yaml(provisioner({issuer: 'https://token.actions.githubusercontent.com', rules: [rule({match})]})),
      ).filter((w) => w.startsWith('provisioners[0].rules[0] (r)'))
    for (const claim of [
      'repository',
      'repository_id',
      'repository_owner',
      'repository_owner_id',
      'sub',
      'project_path',
      'project_id',
      'namespace_path',
      'namespace_id',
    ]) {
      assert.equal(gh(`{ref: refs/heads/main, ${claim}: x}`).length, 0, claim)
    }
    const w = (principal: string) =>
      warnings(
        yaml(provisioner({rules: [rule().replace('principals: [alice]', `principals: ["\${${principal}}"]`)]})),
      ).filter((x) => x.includes('which the user chooses'))
    for (const claim of [
      'preferred_username',
      'name',
      'nickname',
      'given_name',
      'family_name',
      'middle_name',
      'username',
      'user_login',
      'login',
    ])
      assert.equal(w(claim).length, 1, claim)
    assert.equal(w('email').length, 0)
  })

  it('CI issuers are recognised by their whole origin, not by a URL that contains one', () => {
    for (const issuer of [
      'https://token.actions.githubusercontent.com',
      'https://token.actions.githubusercontent.com/acme',
      'https://gitlab.com',
      'https://gitlab.com/',
      'https://oidc.circleci.com/org/1',
      'https://vstoken.actions.githubusercontent.com/x',
    ]) {
      assert.equal(isCiProvisioner({issuer, clientId: 'c'}), true, issuer)
    }
    for (const issuer of [
      'https://evil.example/https://token.actions.githubusercontent.com',
      'https://evil.example/https://gitlab.com',
      'https://gitlab.com/evil',
      'https://evil.example/https://oidc.circleci.com/',
      'https://evil.example/https://vstoken.actions.githubusercontent.com',
      'https://oidc.circleci.com',
    ]) {
      assert.equal(isCiProvisioner({issuer, clientId: 'c'}), false, issuer)
    }
  })

  it("a rule's ttl at the ceiling is not warned about; above it, it is", () => {
    assert.deepEqual(warnings(yaml(provisioner({extra: ', maxTtl: 1h'}))), [])
    assert.equal(warnings(yaml(provisioner({extra: ', maxTtl: 59m'}))).length, 1)
  })

  it('overlap of value lists with domains and globs: any one value is enough', () => {
    assert.equal(mayOverlap(['a@y.com', 'b@x.com'], {domain: 'x.com'}), true)
    assert.equal(mayOverlap([5, 'b@x.com'], {domain: 'x.com'}), true)
    assert.equal(mayOverlap([5, true], {domain: 'x.com'}), false)
    assert.equal(mayOverlap([5, 'refs/heads/main'], {glob: 'refs/*/main'}), true)
    assert.equal(mayOverlap({glob: 'refs/*/main'}, 'refs/heads/main'), true)
    assert.equal(mayOverlap('u@x.com', {contains: 'u@x.com'}), false)
  })
})

describe('ca.yaml: the store block', () => {
  it('durability normal is warned about; full is not', () => {
    assert.equal(
      warnings('db: {type: sqlite, durability: normal}').filter((w) => w.startsWith('db.durability')).length,
      1,
    )
    assert.deepEqual(
      warnings('db: {type: sqlite, durability: full}').filter((w) => w.startsWith('db.')),
      [],
    )
    assert.deepEqual(problemFields('db: {type: sqlite, durability: sometimes}'), ['db.durability'])
  })

  it('a socket directory is local: no TLS warning even with TLS off; a remote host without TLS is warned about', () => {
    const w = (db: string) => warnings(`db: ${db}`).filter((x) => x.startsWith('db.'))
    assert.deepEqual(
      w('{type: postgresql, url: "postgres://sshca@%2Frun%2Fpostgresql/sshca", tls: {mode: disable}}'),
      [],
    )
    assert.deepEqual(
      w('{type: postgresql, url: "postgres://sshca@db/sshca?host=/run/postgresql", tls: {mode: disable}}'),
      [],
    )
    assert.equal(w('{type: postgresql, url: "postgres://sshca@db.internal/sshca", tls: {mode: disable}}').length, 1)
    assert.deepEqual(w('{type: postgresql, url: "postgres://sshca@db.internal/sshca", tls: {mode: verify-ca}}'), [])
  })
})

/** The fields warnings name ("provisioners[0].rules[0].webhook.url"), as problemFields does for problems. */
const warningFields = (text: string): string[] => warnings(text).map((w) => w.slice(0, w.indexOf(':')))

describe('ca.yaml: the checks the later features brought (metrics, keys, webhooks, principalsFrom, PostgreSQL)', () => {
  const at = 'provisioners[0].rules[0]'
  const withRule = (extra: string, certificate = '') =>
    yaml(
      provisioner({
        rules: [
          `{name: r, ${extra ? `${extra}, ` : ''}match: {email_verified: true, email: {domain: example.com}}, certificate: {principals: [alice], ttl: 1h${certificate}}}`,
        ],
      }),
    )

  it('metrics.address: host:port, its own listener, loopback or warned about', () => {
    assert.deepEqual(problemFields('metrics: {address: "not an address"}'), ['metrics.address'])
    assert.deepEqual(problemFields('address: "127.0.0.1:9000"\nmetrics: {address: "127.0.0.1:9000"}'), [
      'metrics.address',
    ])
    // port 0 on both is two listeners, each on a port of its own
    assert.deepEqual(problemFields('address: "127.0.0.1:0"\nmetrics: {address: "127.0.0.1:0"}'), [])
    const withProvisioner = (m: string) => `${m}\n${yaml(provisioner())}`
    assert.deepEqual(warningFields(withProvisioner('metrics: {address: "0.0.0.0:9100"}')), ['metrics.address'])
    assert.deepEqual(warnings(withProvisioner('metrics: {address: "127.0.0.1:9100"}')), [])
    assert.equal(
      parseConfig('metrics: {address: "127.0.0.1:9100"}', 'ca.yaml').config.metrics?.address,
      '127.0.0.1:9100',
    )
    assert.equal(parseConfig('{}', 'ca.yaml').config.metrics, undefined)
    assert.deepEqual(problemFields('metrics: {address: "127.0.0.1:9100", path: /x}'), ['metrics'])
  })

  it('keys.kms: "file" (the default) or a pkcs11: URI that names its token and module, never its PIN', () => {
    assert.equal(parseConfig('keys: {}', 'ca.yaml').config.keys.kms, 'file')
    assert.deepEqual(problemFields('keys: {kms: vault}'), ['keys.kms'])
    assert.deepEqual(
      problemFields('keys: {kms: "pkcs11:token=ca?pin-value=1234&module-path=/usr/lib/softhsm/libsofthsm2.so"}'),
      ['keys.kms'],
    )
    assert.deepEqual(
      problemFields(
        'keys: {kms: "pkcs11:token=ca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pin"}',
      ),
      [],
    )
    assert.deepEqual(problemFields('keys: {kms: file, other: 1}'), ['keys'])
  })

  it('a rule webhook: https (plain http on loopback only, warned), no credentials in the URL, at most 30 s, a secret or a warning', () => {
    const hook = (h: string) => withRule(`webhook: {${h}}`)
    assert.deepEqual(problemFields(hook('url: "https://hooks.example.com/ssh", secretFile: hook.secret')), [])
    assert.deepEqual(warningFields(hook('url: "https://hooks.example.com/ssh", secretFile: hook.secret')), [])
    assert.deepEqual(warningFields(hook('url: "https://hooks.example.com/ssh"')), [`${at}.webhook`])
    assert.deepEqual(problemFields(hook('url: "http://hooks.example.com/ssh", secretFile: s')), [`${at}.webhook.url`])
    assert.deepEqual(warningFields(hook('url: "http://127.0.0.1:8080/ssh", secretFile: s')), [`${at}.webhook.url`])
    assert.deepEqual(problemFields(hook('url: "ftp://127.0.0.1/ssh", secretFile: s')), [`${at}.webhook.url`])
    assert.deepEqual(problemFields(hook('url: "https://user:pw@hooks.example.com/ssh", secretFile: s')), [
      `${at}.webhook.url`,
    ])
    assert.deepEqual(problemFields(hook('url: "https://user@hooks.example.com/ssh", secretFile: s')), [
      `${at}.webhook.url`,
    ])
    assert.deepEqual(problemFields(hook('url: "https://hooks.example.com/ssh", secretFile: s, timeout: 31s')), [
      `${at}.webhook.timeout`,
    ])
    // at most 30 s; not below limits.idleTimeout (60 s by default) is warned about: the socket closes
    // after that long without a byte while the request waits on its webhook. Not limits.requestTimeout
    // (10 s by default): it bounds the request's arrival, and a request received waits for its webhook
    assert.deepEqual(problemFields(hook('url: "https://hooks.example.com/ssh", secretFile: s, timeout: 30s')), [])
    assert.deepEqual(warningFields(hook('url: "https://hooks.example.com/ssh", secretFile: s, timeout: 30s')), [])
    const idle = (h: string) => `limits: {idleTimeout: 10s}\n${hook(h)}`
    assert.deepEqual(warningFields(idle('url: "https://hooks.example.com/ssh", secretFile: s, timeout: 10s')), [
      `${at}.webhook.timeout`,
    ])
    assert.deepEqual(warningFields(idle('url: "https://hooks.example.com/ssh", secretFile: s, timeout: 9s')), [])
    const parsed = parseConfig(hook('url: "https://hooks.example.com/ssh", secretFile: s, ca: hooks-ca.pem'), 'ca.yaml')
    assert.deepEqual(parsed.config.provisioners[0]!.rules[0]!.webhook, {
      url: 'https://hooks.example.com/ssh',
      timeout: 2,
      secretFile: 's',
      ca: 'hooks-ca.pem',
    })
    for (const empty of ['ca: ""', 'secretFile: ""', 'bogus: 1'])
      assert.deepEqual(problemFields(hook(`url: "https://hooks.example.com/ssh", ${empty}`)), [
        `${at}.webhook${empty === 'bogus: 1' ? '' : `.${empty.split(':')[0]}`}`,
      ])
  })

  it('principalsFrom: a claim the tokens carry, an allow list that names groups, a map into safe and unreserved names', () => {
    const pf = (p: string) => withRule('', `, principalsFrom: {${p}}`)
    const field = `${at}.certificate.principalsFrom`
    assert.deepEqual(warningFields(pf('claim: groups, allow: ["ssh-*"]')), [])
    assert.deepEqual(warningFields(pf('claim: gruops, allow: ["ssh-*"]')), [`${field}.claim`])
    assert.deepEqual(warningFields(pf('claim: groups, allow: ["ssh-*", "*", "?*", "s*"]')), [
      `${field}.allow[1]`,
      `${field}.allow[2]`,
    ])
    assert.deepEqual(warningFields(pf('claim: groups, allow: ["ssh-*"], map: {ssh-ops: ops, web: web}')), [
      `${field}.map`,
    ])
    assert.deepEqual(problemFields(pf('claim: groups, allow: ["ssh-*"], map: {ssh-ops: "o p"}')), [`${field}.map`])
    assert.deepEqual(problemFields(pf('claim: groups, allow: ["ssh-*"], map: {ssh-ops: ops}')), [])
    for (const bad of ['claim: "", allow: ["ssh-*"]', 'claim: groups, allow: []', 'claim: groups, allow: [""]'])
      assert.ok(problemFields(pf(bad)).every((f) => f.startsWith(field)) && problemFields(pf(bad)).length > 0, bad)
    assert.ok(problemFields(pf('claim: groups, allow: ["ssh-*"], map: {"": ops}')).length > 0)
    assert.ok(problemFields(pf('claim: groups, allow: ["ssh-*"], map: {ssh-ops: ""}')).length > 0)
    assert.ok(problemFields(pf('claim: groups, allow: ["ssh-*"], other: 1')).length > 0)
    assert.ok(problemFields(withRule('', ', principals: [""]')).length > 0)
    // without principals a rule still grants through principalsFrom
    assert.deepEqual(
      parseConfig(
        yaml(
          provisioner({
            rules: [
              '{name: r, match: {email_verified: true, email: {domain: example.com}}, certificate: {ttl: 1h, principalsFrom: {claim: groups, allow: ["ssh-*"]}}}',
            ],
          }),
        ),
        'ca.yaml',
      ).config.provisioners[0]!.rules[0]!.certificate.principals,
      [],
    )
  })

  it('source addresses that parse are accepted; forwarding extensions are warned about, and any extension beside a force-command', () => {
    assert.deepEqual(problemFields(withRule('', ', sourceAddress: [10.0.0.0/8, "2001:db8::1"]')), [])
    assert.deepEqual(warningFields(withRule('', ', extensions: [permit-pty]')), [])
    assert.deepEqual(warningFields(withRule('', ', extensions: [permit-pty, permit-agent-forwarding]')), [`${at} (r)`])
    assert.ok(
      warnings(withRule('', ', extensions: [permit-pty, permit-agent-forwarding]'))[0]!.includes(
        'permit-agent-forwarding',
      ),
    )
    assert.ok(!warnings(withRule('', ', extensions: [permit-pty, permit-agent-forwarding]'))[0]!.includes('permit-pty'))
    assert.deepEqual(warningFields(withRule('', ', forceCommand: /bin/deploy, extensions: [permit-pty]')), [
      `${at} (r)`,
    ])
    assert.deepEqual(warningFields(withRule('', ', forceCommand: /bin/deploy')), [])
  })

  it('limits.maxEventLoopDelay: a positive number of milliseconds, or false for off', () => {
    assert.equal(parseConfig('limits: {maxEventLoopDelay: false}', 'ca.yaml').config.limits.maxEventLoopDelay, false)
    assert.equal(parseConfig('limits: {maxEventLoopDelay: 50}', 'ca.yaml').config.limits.maxEventLoopDelay, 50)
    for (const bad of ['0', 'true', '1.5'])
      assert.deepEqual(problemFields(`limits: {maxEventLoopDelay: ${bad}}`), ['limits.maxEventLoopDelay'])
    assert.deepEqual(problemFields('ssh: {reservedPrincipals: [""]}'), ['ssh.reservedPrincipals[0]'])
  })

  it('ssh.reservedPrincipals replaces the defaults: check-config names every default it leaves out (root first), and nothing when it keeps them', () => {
    const about = (text: string) => warnings(text).filter((w) => w.startsWith('ssh.reservedPrincipals'))
    // an operator who meant to add one name gave up root and the rest
    const [w] = about('ssh: {reservedPrincipals: [deploy-bot]}')
    assert.ok(w, 'no warning for a list without root')
    assert.match(w, /no longer reserved.*: root, toor, admin,/)
    assert.ok(w.includes('ec2-user') && w.endsWith('list them too unless you mean it'), w)
    assert.match(about('ssh: {reservedPrincipals: [git]}')[0]!, /: root, .*postgres/)
    // the defaults and one more: nothing to say; the defaults but admin: that one named
    assert.deepEqual(
      about(`ssh: {reservedPrincipals: [${[...DEFAULT_RESERVED_PRINCIPALS, 'deploy-bot'].join(', ')}]}`),
      [],
    )
    const noAdmin = about(
      `ssh: {reservedPrincipals: [${DEFAULT_RESERVED_PRINCIPALS.filter((p) => p !== 'admin').join(', ')}]}`,
    )
    assert.equal(noAdmin.length, 1)
    assert.match(noAdmin[0]!, /no longer reserved and a template may render them from a claim: admin; /)
    assert.deepEqual(about('ssh: {hostPattern: "*"}'), [])
  })

  it('db: sqlite with its defaults, or PostgreSQL by a URL without a password, with a bounded pool and TLS that verifies by default', () => {
    assert.deepEqual(parseConfig('db: {type: sqlite}', 'ca.yaml').config.db, {
      type: 'sqlite',
      path: 'db/sshca.sqlite',
      durability: 'full',
    })
    assert.deepEqual(problemFields('db: {type: sqlite, bogus: 1}'), ['db'])
    const pg = (extra = '', url = 'postgres://sshca@db.example.com/sshca') =>
      `db: {type: postgresql, url: "${url}"${extra}}`
    const parsed = parseConfig(pg(', tls: {ca: pg-ca.pem}'), 'ca.yaml').config.db
    assert.deepEqual(parsed, {
      type: 'postgresql',
      url: 'postgres://sshca@db.example.com/sshca',
      pool: 10,
      tls: {ca: 'pg-ca.pem'},
      timeout: 5,
      autoMigrate: true,
    })
    assert.deepEqual(problemFields(pg()), [])
    assert.deepEqual(problemFields(pg(', pool: 1000')), [])
    assert.deepEqual(problemFields(pg(', pool: 1001')), ['db.pool'])
    assert.deepEqual(problemFields(pg(', passwordFile: ""')), ['db.passwordFile'])
    assert.deepEqual(problemFields(pg(', tls: {mode: prefer}')), ['db.tls.mode'])
    for (const mode of ['disable', 'require', 'verify-ca', 'verify-full'])
      assert.deepEqual(problemFields(pg(`, tls: {mode: ${mode}}`)), [], mode)
    assert.deepEqual(problemFields(pg(', tls: {cert: c.pem, key: ""}')), ['db.tls.key'])
    assert.deepEqual(problemFields(pg(', tls: {cert: c.pem}')), ['db.tls'])
    assert.deepEqual(problemFields(pg(', tls: {cert: c.pem, key: k.pem}')), [])
    for (const url of [
      'not a url',
      'mysql://sshca@db.example.com/sshca',
      'postgres://sshca:secret@db.example.com/sshca',
      'postgres://sshca@db.example.com/sshca?sslmode=disable',
      'postgres:///sshca',
    ])
      assert.deepEqual(problemFields(pg('', url)), ['db.url'], url)
    for (const url of [
      'postgresql://sshca@db.example.com:5433/sshca?application_name=ca1',
      'postgres:///sshca?host=/run/postgresql',
      'postgres://sshca@%2Frun%2Fpostgresql/sshca',
      'postgres://db.example.com',
    ])
      assert.deepEqual(problemFields(pg('', url)), [], url)
    // clear text to a remote server is warned about; a socket or loopback is not
    const pgWarned = (extra: string, url?: string) => warningFields(`${pg(extra, url)}\n${yaml(provisioner())}`)
    assert.deepEqual(pgWarned(', tls: {mode: disable}'), ['db.tls.mode'])
    assert.deepEqual(pgWarned(', tls: {mode: require}'), ['db.tls.mode'])
    assert.deepEqual(pgWarned(', tls: {mode: disable}', 'postgres://sshca@127.0.0.1/sshca'), [])
    assert.deepEqual(pgWarned('', 'postgres:///sshca?host=/run/postgresql'), [])
  })
})

describe('loadConfig: reading ca.yaml', () => {
  it('a missing file is ERR_FILE_NOT_FOUND; one that cannot be read (a folder) is ERR_INPUT', async () => {
    const {mkdtempSync} = await import('node:fs')
    const {tmpdir} = await import('node:os')
    const {join} = await import('node:path')
    const {loadConfig} = await import('../../../src/ca/config/config.ts')
    const dir = mkdtempSync(join(tmpdir(), 'sshca-config-'))
    await assert.rejects(loadConfig(join(dir, 'ca.yaml')), {code: 'ERR_FILE_NOT_FOUND'})
    await assert.rejects(loadConfig(dir), {code: 'ERR_INPUT'})
  })
})
