import assert from 'node:assert/strict'
import {
  closeDeadlineSeconds,
  keyStoreOf,
  mayOverlap,
  parseConfig,
  signingWaitSeconds,
  startOnlyChanges,
  storeWaitSeconds,
} from '../../../src/ca/config/config.ts'
import {parseKms} from '../../../src/ca/config/kms.ts'
import {ISSUE_YAML} from '../../helpers/issue-yaml.ts'

/** `settings` (limits, db …) and one rule whose webhook takes `timeout` seconds. */
const webhookYaml = (settings: string, timeout: number) => `${settings}provisioners:
  - name: p
    type: oidc
    issuer: https://idp.example.com
    clientId: c
    rules:
      - name: r
        webhook: {url: https://hook.example.com/allow, timeout: ${timeout}}
        match: {email: {domain: example.com}}
        certificate: {principals: [a], ttl: 1h}
`

function problems(yaml: string): string[] {
  try {
    parseConfig(yaml, 'ca.yaml')
  } catch (err) {
    assert.equal((err as {code: string}).code, 'ERR_CA_CONFIG')
    return (err as {details: {problems: string[]}}).details.problems
  }
  assert.fail('config was accepted')
}

const provisioner = (extra: string, rule = '') => `
provisioners:
  - name: p
    type: oidc
    issuer: https://idp.example.com
    clientId: c
${extra}
    rules:
      - name: r
        match: {email: {domain: example.com}}
        certificate: {principals: [a], ttl: 1h${rule}}
`

describe('ca.yaml', () => {
  it('grants every extension OpenSSH defines (PROTOCOL.certkeys) and nothing else', () => {
    // from PROTOCOL.certkeys, not from KNOWN_EXTENSIONS: a name dropped from (or emptied in) that set must fail here
    const openssh = [
      'no-touch-required',
      'permit-X11-forwarding',
      'permit-agent-forwarding',
      'permit-port-forwarding',
      'permit-pty',
      'permit-user-rc',
    ]
    const yaml = provisioner('', `, extensions: [${openssh.join(', ')}]`)
    assert.deepEqual(parseConfig(yaml, 'ca.yaml').config.provisioners[0]!.rules[0]!.certificate.extensions, openssh)
    for (const near of ['permit-x11-forwarding', 'permit_pty', '', 'force-command'])
      assert.match(problems(provisioner('', `, extensions: ["${near}"]`))[0]!, /unknown extension/, near)
  })

  it('names the field of every problem', () => {
    assert.deepEqual(
      problems(
        'provisioners: [{name: p, type: oidc, issuer: https://i, clientId: c, rules: [{name: r, match: {a: 1}, certificate: {principals: [a], ttl: 8x}}]}]',
      ),
      ['provisioners[0].rules[0].certificate.ttl: "8x" is not a duration (use 90s, 15m, 8h, 30d)'],
    )
    assert.deepEqual(
      problems(
        'provisioners: [{name: p, type: oidc, issuer: https://i, clientId: c, rules: [{name: r, match: {a: 1}, certificate: {principals: [a], ttl: 36501d}}]}]',
      ),
      ['provisioners[0].rules[0].certificate.ttl: "36501d" is longer than 100 years (36500d), the most ca.yaml takes'],
    )
    assert.match(
      problems('ssh: {maxHostTtl: 3153600001}')[0]!,
      /ssh\.maxHostTtl: "3153600001" is longer than 100 years/,
    )
    assert.deepEqual(problems('bogus: 1'), ['(top level): Unrecognized key: "bogus"'])
    assert.match(
      problems(provisioner('', ', extensions: [permit-everything]'))[0]!,
      /extensions\[0\]: unknown extension "permit-everything"/,
    )
    assert.match(
      problems(provisioner('', ', sourceAddress: [10.0.0.0/33]'))[0]!,
      /sourceAddress\[0\]: "10.0.0.0\/33" is not/,
    )
    assert.match(
      problems(provisioner('').replace('principals: [a]', 'principals: ["${email"]'))[0]!,
      /principals\[0\]: .* placeholder/,
    )
    assert.match(
      problems(provisioner('    listenAddress: 0.0.0.0:10000'))[0]!,
      /listenAddress: must be a loopback address/,
    )
    assert.match(problems('address: nope')[0]!, /address: "nope" is not host:port/)
  })

  it('accepts plain-http issuers only on loopback addresses', () => {
    assert.match(
      problems(provisioner('').replace('https://idp.example.com', 'http://idp.example.com'))[0]!,
      /issuer: plain http is accepted only on loopback/,
    )
    assert.match(problems(provisioner('').replace('https://idp.example.com', 'http://localhost:8080'))[0]!, /loopback/)
    assert.doesNotThrow(() =>
      parseConfig(provisioner('').replace('https://idp.example.com', 'http://127.0.0.1:8080'), 'ca.yaml'),
    )
  })

  it('refuses duplicate provisioners, rules, and provisioners tokens cannot be routed between', () => {
    const y = ISSUE_YAML.replace('name: ci', 'name: sso')
    assert.match(problems(y).join('\n'), /provisioners\[1\]\.name: "sso" is used twice/)
    const same = ISSUE_YAML.replace('https://token.actions.githubusercontent.com', 'https://idp.example.com').replace(
      'audience: sshca-ci',
      'audience: sshca-cli',
    )
    assert.match(problems(same).join('\n'), /same issuer and audience as provisioner "sso"/)
    assert.match(problems(provisioner('').replace('clientId: c', ''))[0]!, /set clientId or audience/)
  })

  it('refuses a YAML syntax error and duplicate keys', () => {
    assert.equal(problems('a: [').length > 0, true)
    assert.match(problems('disabled: true\ndisabled: false').join(), /unique|duplicate/i)
  })

  it('warns about a rule on repository alone, overlapping rules, and granted forwarding', () => {
    const y = `
provisioners:
  - name: ci
    type: oidc
    issuer: https://token.actions.githubusercontent.com
    audience: sshca-ci
    rules:
      - name: any-run
        match: {repository: acme/app}
        certificate: {principals: [deploy], ttl: 10m, forceCommand: /bin/deploy, extensions: [permit-pty]}
      - name: main
        match: {repository: [acme/app, acme/lib], ref: refs/heads/main}
        certificate: {principals: [deploy], ttl: 10m, extensions: [permit-agent-forwarding]}
      - name: other-repo
        match: {repository: acme/web, ref: refs/heads/main}
        certificate: {principals: [web], ttl: 10m}
`
    const {warnings} = parseConfig(y, 'ca.yaml')
    assert.equal(warnings.length, 4, warnings.join('\n'))
    assert.match(warnings.join('\n'), /any-run\): matches on repository alone/)
    assert.match(warnings.join('\n'), /any-run\): grants permit-pty with a force-command/)
    assert.match(warnings.join('\n'), /main\): grants permit-agent-forwarding/)
    assert.match(warnings.join('\n'), /rules "any-run" and "main" can match the same token/)
    assert.doesNotMatch(warnings.join('\n'), /other-repo" can match/)
  })

  it('decides overlap conservatively', () => {
    assert.equal(mayOverlap('a', 'b'), false)
    assert.equal(mayOverlap(['a', 'b'], 'b'), true)
    assert.equal(mayOverlap({domain: 'x.com'}, 'u@x.com'), true)
    assert.equal(mayOverlap({domain: 'x.com'}, {domain: 'y.com'}), false)
    assert.equal(mayOverlap({glob: 'refs/heads/*'}, 'refs/tags/v1'), false)
    assert.equal(mayOverlap({glob: 'refs/heads/*'}, {glob: 'refs/*/main'}), true)
    assert.equal(mayOverlap({contains: 'ops'}, 'ops'), false)
  })

  it('warns when a rule asks for more time than the ceilings allow', () => {
    const {warnings} = parseConfig(provisioner('    maxTtl: 30m'), 'ca.yaml')
    assert.match(warnings.join(), /ttl: 1h is capped to 30m/)
  })
})

describe('ca.yaml warnings a newcomer needs (issue 17)', () => {
  const warn = (yaml: string) => parseConfig(yaml, 'ca.yaml').warnings

  it('a misspelt claim in a match or a template names the claim it probably meant', () => {
    const w = warn(`
provisioners:
  - {name: p, type: oidc, issuer: https://idp.example.com, clientId: c, rules: [
      {name: r, match: {email_verifed: true, email: {domain: example.com}}, certificate: {principals: ["\${emial.local}"], ttl: 1h}}]}
`)
    assert.ok(
      w.includes(
        'provisioners[0].rules[0].match.email_verifed: "email_verifed" is not a claim these tokens carry; did you mean "email_verified"? (a claim the token lacks never matches)',
      ),
      w.join('\n'),
    )
    assert.ok(
      w.some((x) =>
        x.includes('template "${emial.local}": "emial" is not a claim these tokens carry; did you mean "email"?'),
      ),
      w.join('\n'),
    )
  })

  it('custom claims of a general IdP pass; GitHub Actions claims are a closed set', () => {
    const general = warn(`
provisioners:
  - {name: p, type: oidc, issuer: https://idp.example.com, clientId: c, rules: [
      {name: r, match: {department: ops, email_verified: true, email: {domain: example.com}}, certificate: {principals: [ops], ttl: 1h}}]}
`)
    assert.ok(!general.some((x) => x.includes('department')), general.join('\n'))
    const gh = warn(`
provisioners:
  - {name: ci, type: oidc, issuer: https://token.actions.githubusercontent.com, audience: a, rules: [
      {name: r, match: {repository: acme/app, branch: main}, certificate: {principals: [deploy], ttl: 5m}}]}
`)
    assert.ok(
      gh.includes(
        'provisioners[0].rules[0].match.branch: "branch" is not a claim GitHub Actions tokens carry (a claim the token lacks never matches)',
      ),
      gh.join('\n'),
    )
  })

  it('a plain http issuer (loopback only) is for development', () => {
    const w = warn(`
provisioners:
  - {name: p, type: oidc, issuer: "http://127.0.0.1:8080", clientId: c, rules: [{name: r, match: {email_verified: true, email: {domain: example.com}}, certificate: {principals: [a], ttl: 1h}}]}
`)
    assert.ok(
      w.includes(
        'provisioners[0].issuer: http://127.0.0.1:8080 is plain http, fit for local development only; a real identity provider is https',
      ),
      w.join('\n'),
    )
  })
})

describe('ca.yaml db:', () => {
  it('defaults to SQLite; takes a PostgreSQL block with its defaults (pool 10, timeout 5 s, verify-full, autoMigrate)', () => {
    assert.deepEqual(parseConfig('{}', 'ca.yaml').config.db, {
      type: 'sqlite',
      path: 'db/sshca.sqlite',
      durability: 'full',
    })
    assert.deepEqual(
      parseConfig('db: {type: postgresql, url: "postgres://sshca@db.internal/sshca", tls: {ca: pg-ca.crt}}', 'ca.yaml')
        .config.db,
      {
        type: 'postgresql',
        url: 'postgres://sshca@db.internal/sshca',
        pool: 10,
        tls: {ca: 'pg-ca.crt'},
        timeout: 5,
        autoMigrate: true,
      },
    )
  })

  it("refuses a password in the URL (without repeating it), libpq's ssl parameters, half a client certificate", () => {
    const p = problems(
      'db: {type: postgresql, url: "postgres://sshca:hunter2@db/sshca", timeout: 10s, tls: {cert: c.pem}}',
    )
    assert.deepEqual(p, ['db.url: holds a password: put it in db.passwordFile (0600) or $PGPASSWORD, never in ca.yaml'])
    assert.ok(!p.join().includes('hunter2'))
    assert.deepEqual(problems('db: {type: postgresql, url: "postgres://sshca@db/sshca?sslmode=disable"}'), [
      'db.url: ?sslmode= is not supported: TLS is set with db.tls (only host, application_name)',
    ])
    assert.deepEqual(
      problems('db: {type: postgresql, url: "postgres://sshca@db/sshca", timeout: 10s, tls: {cert: c.pem}}'),
      ['db.tls: cert and key go together'],
    )
    assert.deepEqual(problems('db: {type: mysql}'), [problems('db: {type: mysql}')[0]!])
    assert.match(problems('db: {type: mysql}')[0]!, /^db\.type: /)
  })

  it('warns when the connection to a remote database is not verified; a socket or loopback is fine', () => {
    const w = (db: string) => parseConfig(`db: ${db}`, 'ca.yaml').warnings.filter((x) => x.startsWith('db.'))
    assert.match(
      w('{type: postgresql, url: "postgres://sshca@db.internal/sshca", tls: {mode: disable}}')[0]!,
      /in clear/,
    )
    assert.match(
      w('{type: postgresql, url: "postgres://sshca@db.internal/sshca", tls: {mode: require}}')[0]!,
      /does not check whom it talks to/,
    )
    assert.deepEqual(w('{type: postgresql, url: "postgres://sshca@127.0.0.1:5432/sshca", tls: {mode: disable}}'), [])
    assert.deepEqual(w('{type: postgresql, url: "postgres://sshca@%2Frun%2Fpostgresql/sshca"}'), [])
  })

  it("checks db.timeout against limits.idleTimeout, the socket's, not requestTimeout (the request's arrival)", () => {
    const check = (yaml: string) => {
      const c = parseConfig(yaml, 'ca.yaml')
      return {config: c.config, warnings: c.warnings.filter((w) => w.startsWith('db.'))}
    }
    const db = (timeout: string) =>
      `db: {type: postgresql, url: "postgres://sshca@127.0.0.1/sshca", timeout: ${timeout}}\n`
    // a request may wait for a connection and then its statement: twice db.timeout and half a second
    assert.equal(storeWaitSeconds(check(db('5s')).config.db), 10.5)
    assert.equal(storeWaitSeconds(check('db: {type: sqlite}\n').config.db), 0)
    // once refused (not below requestTimeout's 10 s), though nothing closed the request at 10 s
    assert.deepEqual(check(`limits: {requestTimeout: 5s}\n${db('8s')}`).warnings, [])
    // not below idleTimeout: the connection closes while the issuance may still commit
    assert.deepEqual(check(`limits: {idleTimeout: 61s}\n${db('10s')}`).warnings, [
      'db.timeout: 10s lets a signing request wait 61.5s on the database (a renewal: the certificate, its revocations, then the issuance; each a connection, then its statement), not below limits.idleTimeout (1m1s): the connection closes while the issuance may still commit and spend its token; lower db.timeout or raise limits.idleTimeout',
    ])
    assert.deepEqual(check(`limits: {idleTimeout: 62s}\n${db('10s')}`).warnings, [])
  })

  it('an issuer with a query or fragment is refused (OIDC Discovery; the store keys tokens as issuer#jti)', () => {
    const yaml = (issuer: string) => `provisioners:
  - name: p
    type: oidc
    issuer: ${issuer}
    audience: a
    rules:
      - name: r
        match: {sub: x}
        certificate: {principals: [a], ttl: 1h}
`
    for (const issuer of ['https://idp.example.com#x', 'https://idp.example.com/?tenant=1'])
      assert.deepEqual(problems(yaml(issuer)), [
        `provisioners[0].issuer: ${issuer} has a query or fragment; an issuer is an https URL without either`,
      ])
    assert.equal(parseConfig(yaml('https://idp.example.com/tenant'), 'ca.yaml').config.provisioners.length, 1)
  })

  it("keys.timeout bounds a token's answer: 10 s unless set, at most 30 s, checked with the store's waits against idleTimeout", () => {
    const kms = 'pkcs11:token=sshca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/sshca/pin'
    const keys = (timeout?: string) => `keys: {kms: "${kms}"${timeout ? `, timeout: ${timeout}` : ''}}\n`
    const pg = 'db: {type: postgresql, url: "postgres://sshca@127.0.0.1/sshca", timeout: 5s}\n'
    const keyWarnings = (yaml: string) => parseConfig(yaml, 'ca.yaml').warnings.filter((w) => w.startsWith('keys.'))
    const c = parseConfig(keys(), 'ca.yaml').config
    assert.equal(c.keys.timeout, 10)
    assert.deepEqual(keyStoreOf(c.keys), {...parseKms(kms), timeoutSeconds: 10})
    assert.equal(
      (keyStoreOf(parseConfig(keys('3s'), 'ca.yaml').config.keys) as {timeoutSeconds: number}).timeoutSeconds,
      3,
    )
    // file keys sign in memory: no wait, nothing to check
    assert.deepEqual(keyStoreOf(parseConfig('keys: {timeout: 2m}\n', 'ca.yaml').config.keys), {type: 'file'})
    assert.deepEqual(problems(keys('31s')), [
      'keys.timeout: 31s is above 30s; a signing request must not wait that long on a token',
    ])
    assert.deepEqual(problems(keys('forever')), ['keys.timeout: "forever" is not a duration (use 90s, 15m, 8h, 30d)'])
    // a signature waits keys.timeout for its turn, then as long for the token's answer
    assert.deepEqual(keyWarnings(keys('29s')), [])
    assert.deepEqual(keyWarnings(`limits: {idleTimeout: 30s}\n${keys('15s')}`), [
      'keys.timeout: 15s lets a signing request wait 30s on the token (its turn, then its answer), not below limits.idleTimeout (30s): the connection closes while the issuance may still commit; lower keys.timeout or raise limits.idleTimeout',
    ])
    // with PostgreSQL, its three calls in a row besides: 2 × 10 + 3 × 10.5 s
    assert.deepEqual(keyWarnings(`limits: {idleTimeout: 51s}\n${pg}${keys()}`), [
      'keys.timeout: 10s lets a signing request wait 51.5s on the token (its turn, then its answer) and the database, not below limits.idleTimeout (51s): the connection closes while the issuance may still commit; lower keys.timeout or raise limits.idleTimeout',
    ])
    assert.deepEqual(keyWarnings(`limits: {idleTimeout: 52s}\n${pg}${keys()}`), [])
    // closing the CA waits for a request's arrival, then its signature's two waits, then 5 s to answer
    const onToken = parseConfig(`limits: {requestTimeout: 10s}\n${keys()}`, 'ca.yaml').config
    assert.equal(closeDeadlineSeconds(onToken, onToken), 10 + 20 + 5)
    const onFiles = parseConfig('limits: {requestTimeout: 10s}\nkeys: {timeout: 30s}\n', 'ca.yaml').config
    assert.equal(closeDeadlineSeconds(onFiles, onFiles), 10 + 5)
  })

  it('a signing request waits on the database more than once: a renewal three calls in a row, a webhook rule one before its webhook and one after', () => {
    const pg = parseConfig('db: {type: postgresql, url: "postgres://sshca@127.0.0.1/sshca", timeout: 5s}\n', 'ca.yaml')
    // POST /ssh/renew: findCertificate, revocationFor, then issue, each up to 10.5 s (authority/host.ts)
    assert.equal(signingWaitSeconds(pg.config.db), 31.5)
    // a webhook rule: spentToken before the webhook, issue after it (authority/sign.ts)
    assert.equal(signingWaitSeconds(pg.config.db, 30), 51)
    // 31.5 s of database waits is not below an idleTimeout of 30 s: the renewal's connection closes
    // while its issuance may still commit (was: 10.5 s checked, no warning)
    const w = parseConfig(
      'limits: {idleTimeout: 30s}\ndb: {type: postgresql, url: "postgres://sshca@127.0.0.1/sshca", timeout: 5s}\n',
      'ca.yaml',
    ).warnings.filter((l) => l.startsWith('db.'))
    assert.equal(w.length, 1, JSON.stringify(w))
    assert.match(w[0]!, /wait 31\.5s on the database/)
    // a 20 s webhook with 10.5 s before it and 10.5 s after it is not below 40 s (was: 30.5 s checked)
    const hook = parseConfig(
      webhookYaml(
        'limits: {idleTimeout: 40s}\ndb: {type: postgresql, url: "postgres://sshca@127.0.0.1/sshca", timeout: 5s}\n',
        20,
      ),
      'ca.yaml',
    ).warnings.filter((l) => l.includes('.webhook.timeout'))
    assert.deepEqual(hook, [
      "provisioners[0].rules[0].webhook.timeout: 20s, and up to 21s on the database around it (db.timeout: the token's spend before, the issuance after), must be below limits.idleTimeout (40s)",
    ])
  })
})

describe('a reload says which settings wait for a restart (startOnlyChanges)', () => {
  const config = (extra: string) => parseConfig(`${provisioner('')}${extra}`, 'ca.yaml').config
  const base = config('')

  it('nothing when they are unchanged, or when what changed follows the policy in force', () => {
    assert.deepEqual(startOnlyChanges(base, config('')), [])
    const live = config('limits: {maxInFlight: 7, maxEventLoopDelay: false, rate: {max: 5, window: 60}}\n')
    assert.deepEqual(startOnlyChanges(base, live), [])
    // turned off, the limit is off at once: no request is over an unlimited max
    assert.deepEqual(startOnlyChanges(base, config('limits: {rate: false}\n')), [])
  })

  it('each setting the server is built from, named with what it stays until the restart', () => {
    const next = config(
      [
        'tls: {clientCertificates: request}',
        'trustProxy: [10.0.0.0/8]',
        'limits: {requestTimeout: 20, headersTimeout: 6, idleTimeout: 30, handshakeTimeout: 4, maxConnections: 10, rate: {max: 300, window: 120}}',
        '',
      ].join('\n'),
    )
    assert.deepEqual(startOnlyChanges(base, next), [
      'tls.clientCertificates: request takes effect when the CA restarts; until then it stays off',
      'trustProxy: ["10.0.0.0/8"] takes effect when the CA restarts; until then it stays false',
      'limits.requestTimeout: 20 takes effect when the CA restarts; until then it stays 10',
      'limits.headersTimeout: 6 takes effect when the CA restarts; until then it stays 5',
      'limits.idleTimeout: 30 takes effect when the CA restarts; until then it stays 60',
      'limits.handshakeTimeout: 4 takes effect when the CA restarts; until then it stays 5',
      'limits.maxConnections: 10 takes effect when the CA restarts; until then it stays 1000',
      'limits.rate.window: 120 takes effect when the CA restarts; until then it stays 60',
    ])
  })

  it('what the CA opens at start: its address, its store, its audit sink, its metrics listener', () => {
    const next = config(
      [
        'address: 127.0.0.1:9443',
        'db: {type: sqlite, path: db/other.sqlite}',
        'audit: {file: /var/log/sshca/audit.log}',
        'metrics: {address: 127.0.0.1:9100}',
        '',
      ].join('\n'),
    )
    assert.deepEqual(startOnlyChanges(base, next), [
      'address: 127.0.0.1:9443 takes effect when the CA restarts; until then it stays 127.0.0.1:9000',
      'db: {"type":"sqlite","path":"db/other.sqlite","durability":"full"} takes effect when the CA restarts; until then it stays {"type":"sqlite","path":"db/sshca.sqlite","durability":"full"}',
      'audit.file: /var/log/sshca/audit.log takes effect when the CA restarts; until then it stays -',
      'metrics.address: 127.0.0.1:9100 takes effect when the CA restarts; until then it stays unset',
    ])
    assert.deepEqual(
      startOnlyChanges(next, base).at(-1),
      'metrics.address: unset takes effect when the CA restarts; until then it stays 127.0.0.1:9100',
    )
  })

  it('keys.kms: the signer registry (a PKCS#11 module and token, or files) is opened at start', () => {
    const next = config(
      'keys: {kms: "pkcs11:token=sshca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/sshca/pin"}\n',
    )
    assert.deepEqual(startOnlyChanges(base, next), [
      'keys.kms: pkcs11:token=sshca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/sshca/pin takes effect when the CA restarts; until then it stays file',
    ])
  })

  it('keys.timeout: the token process is started with it', () => {
    assert.deepEqual(startOnlyChanges(base, config('keys: {timeout: 3s}\n')), [
      'keys.timeout: 3 takes effect when the CA restarts; until then it stays 10',
    ])
  })

  it('dnsNames: they name the TLS certificate from its next issue, which a reload is not', () => {
    assert.deepEqual(startOnlyChanges(base, config('dnsNames: [ca.example.com, 127.0.0.1]\n')), [
      'dnsNames: ["ca.example.com","127.0.0.1"] name the TLS certificate from its next issue (the restart, or its renewal, a root activation or `ca intermediate` before it); until then it names ["127.0.0.1"]',
    ])
  })

  it('dnsNames: against the names of the TLS certificate in force, which an issue since the start changed', () => {
    const both = config('dnsNames: [127.0.0.1, ca.example.com]\n')
    // a root activation issued it under the reloaded names: a later reload of them has nothing to say
    assert.deepEqual(startOnlyChanges(base, both, ['127.0.0.1', 'ca.example.com']), [])
    // back to the start's names: the certificate in force keeps the other ones until its next issue
    assert.deepEqual(startOnlyChanges(base, base, ['127.0.0.1', 'ca.example.com']), [
      'dnsNames: ["127.0.0.1"] name the TLS certificate from its next issue (the restart, or its renewal, a root activation or `ca intermediate` before it); until then it names ["127.0.0.1","ca.example.com"]',
    ])
    // another order names the same certificate, which no issue changes (loadTls compares them so)
    assert.deepEqual(startOnlyChanges(both, config('dnsNames: [ca.example.com, 127.0.0.1]\n')), [])
  })

  it("a rule's webhook (applied at once) against the idleTimeout in force, not the reloaded one", () => {
    const withWebhook = (settings: string, timeout: number) =>
      parseConfig(webhookYaml(settings, timeout), 'ca.yaml').config
    // 20 s would be under the reloaded 60 s, but the socket closes after the start's 10 s of silence
    const start = withWebhook('limits: {idleTimeout: 10}\n', 2)
    const raised = withWebhook('limits: {idleTimeout: 60}\n', 20)
    assert.deepEqual(startOnlyChanges(start, raised), [
      'limits.idleTimeout: 60 takes effect when the CA restarts; until then it stays 10',
      'provisioners[0].rules[0].webhook.timeout: 20s must be below limits.idleTimeout in force (10s until the CA restarts)',
    ])
    // under the one in force: only the timeout's own line
    assert.deepEqual(startOnlyChanges(start, withWebhook('limits: {idleTimeout: 60}\n', 5)), [
      'limits.idleTimeout: 60 takes effect when the CA restarts; until then it stays 10',
    ])
    // the idleTimeout unchanged: the rule check has said it already (against the same value)
    assert.deepEqual(startOnlyChanges(raised, withWebhook('limits: {idleTimeout: 60}\n', 25)), [])
    // requestTimeout bounds the request's arrival, not its wait on the webhook: raising it with the
    // webhook's timeout is no reason to warn (the start's 10 s would pass a 20 s webhook's answer)
    assert.deepEqual(startOnlyChanges(base, withWebhook('limits: {requestTimeout: 30}\n', 20)), [
      'limits.requestTimeout: 30 takes effect when the CA restarts; until then it stays 10',
    ])
    // with PostgreSQL the request then waits on the database: the webhook's timeout and the store's
    // wait together, checked by the rule (the reloaded values) and, when either changes, against the
    // start's, in force
    const pg = (timeout: string) =>
      `db: {type: postgresql, url: "postgres://sshca@127.0.0.1/sshca", timeout: ${timeout}}\n`
    const onPg = parseConfig(webhookYaml(`limits: {idleTimeout: 30}\n${pg('5s')}`, 20), 'ca.yaml')
    // 20 s alone is below 30 s; with the database's 10.5 s before it and after it, it is not
    assert.deepEqual(
      onPg.warnings.filter((w) => w.includes('.webhook.timeout')),
      [
        "provisioners[0].rules[0].webhook.timeout: 20s, and up to 21s on the database around it (db.timeout: the token's spend before, the issuance after), must be below limits.idleTimeout (30s)",
      ],
    )
    const fastDb = withWebhook(`limits: {idleTimeout: 30}\n${pg('2s')}`, 20)
    assert.deepEqual(startOnlyChanges(fastDb, onPg.config), [
      `db: ${JSON.stringify(onPg.config.db)} takes effect when the CA restarts; until then it stays ${JSON.stringify(fastDb.db)}`,
    ])
    assert.deepEqual(startOnlyChanges(onPg.config, fastDb), [
      `db: ${JSON.stringify(fastDb.db)} takes effect when the CA restarts; until then it stays ${JSON.stringify(onPg.config.db)}`,
      "provisioners[0].rules[0].webhook.timeout: 20s, and up to 21s on the database around it (db.timeout: the token's spend before, the issuance after), must be below limits.idleTimeout in force (30s until the CA restarts)",
    ])
  })

  it('a rate limit turned on waits for the restart: nothing counts the requests until then', () => {
    const off = config('limits: {rate: false}\n')
    assert.deepEqual(startOnlyChanges(off, base), [
      'limits.rate: {"max":300,"window":60} takes effect when the CA restarts; until then it stays false',
    ])
  })
})
