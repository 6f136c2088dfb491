/**
 * Fuzzing the CA's signing routes (POST /ssh/sign user and host, /sign, /ssh/renew, at / and /1.0)
 * on a real CA (its keys, SQLite store and audit log) with a real token issuer on loopback. Most
 * requests go through fastify's inject (the whole router, hooks, body parser and error handler
 * without sockets); a smaller share over real HTTPS.
 *
 * For every request: never a 5xx; an error is JSON `{status, message, request_id}` with the HTTP
 * status and the x-request-id header; no certificate for anything but a fresh, validly signed token,
 * and none for any variant of a token already spent (mutated header, payload or signature); the CA
 * keeps answering /health.
 */
import assert from 'node:assert/strict'
import {join} from 'node:path'
import {connect as tlsConnect} from 'node:tls'
import {DatabaseSync} from 'node:sqlite'
import fc from 'fast-check'
import {request} from 'undici'
import {mintEnrollmentToken} from '../../src/ca/provisioner/enrollment.ts'
import {SAFE_VALUE} from '../../src/ca/policy/policy.ts'
import {mintSshpopToken, SSHPOP_PROVISIONER} from '../../src/protocol/tokens.ts'
import {parseCertificate, type Certificate} from '../../src/ssh/cert.ts'
import {startTestCa, type TestCa} from '../helpers/ca.ts'
import {startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {keyPool, mutated} from './arbitraries.ts'
import {fixedKey} from './fixed-keys.ts'
import {property} from './fuzz.ts'

const PREFIXES = ['', '/1.0'] as const
/** A marker the step-routes property replaces with the CA's own host certificate (issued in before()). */
const OUR_HOST_CERT = '<our host certificate>'
/** P-256 group order: an ECDSA signature (r, s) is also valid as (r, n − s). */
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n

const b64u = (s: string | Buffer): string => Buffer.from(s).toString('base64url')
const unb64u = (s: string): string => Buffer.from(s, 'base64url').toString()

interface Req {
  method: 'POST' | 'GET'
  url: string
  headers: Record<string, string>
  body?: string | Buffer
}
interface Res {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

// ---- JSON text with the shapes parsers trip on ----

/** JSON values as text: huge and odd numbers, deep nesting, unicode, control characters, big strings. */
const rawJson: fc.Arbitrary<string> = fc.oneof(
  {weight: 4, arbitrary: fc.jsonValue({maxDepth: 3}).map((v) => JSON.stringify(v))},
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '1e999',
      '-1e999',
      '-0',
      '9007199254740993',
      '123456789012345678901234567890',
      '18446744073709551616',
      '1.5',
      '-1',
      '0',
      'null',
      'true',
      'false',
      '""',
      '"\\u0000"',
      '"\\ud800"',
      '"\\udc00x"',
      '"\\u202e"',
      '"a\\nb"',
      '[]',
      '{}',
      '[null]',
      '{"__proto__":{"admin":true}}',
      '{"constructor":{"prototype":{"x":1}}}',
    ),
  },
  {weight: 1, arbitrary: fc.integer({min: 20, max: 3000}).map((n) => '['.repeat(n) + ']'.repeat(n))},
  {weight: 1, arbitrary: fc.integer({min: 20, max: 1500}).map((n) => '{"a":'.repeat(n) + '1' + '}'.repeat(n))},
  {weight: 2, arbitrary: fc.string({unit: 'grapheme', maxLength: 40}).map((s) => JSON.stringify(s))},
  {weight: 1, arbitrary: fc.string({unit: 'binary', maxLength: 20}).map((s) => JSON.stringify(s))},
  {weight: 1, arbitrary: fc.integer({min: 1000, max: 20_000}).map((n) => JSON.stringify('x'.repeat(n)))},
)

type Pairs = [string, string][]
/** An edit of a JSON object's text: set, delete, or duplicate a member; or replace the whole text. */
const objectEdit = (keys: readonly string[]) =>
  fc.oneof(
    fc.record({
      op: fc.constant('set' as const),
      key: fc.oneof(
        fc.constantFrom(...keys),
        fc.constantFrom('__proto__', 'constructor', ''),
        fc.string({maxLength: 10}),
      ),
      value: rawJson,
    }),
    fc.record({op: fc.constant('delete' as const), key: fc.constantFrom(...keys)}),
    fc.record({op: fc.constant('duplicate' as const), key: fc.constantFrom(...keys), value: rawJson}),
    fc.record({op: fc.constant('replace' as const), value: rawJson}),
    fc.record({op: fc.constant('truncate' as const), at: fc.nat()}),
  )
type ObjectEdit = typeof objectEdit extends (k: readonly string[]) => fc.Arbitrary<infer T> ? T : never

function editJson(text: string, edits: ObjectEdit[]): string {
  let pairs: Pairs = Object.entries(JSON.parse(text) as Record<string, unknown>).map(([k, v]) => [
    JSON.stringify(k),
    JSON.stringify(v),
  ])
  let whole: string | undefined
  let cut: number | undefined
  for (const e of edits) {
    if (e.op === 'set')
      pairs = [...pairs.filter(([k]) => k !== JSON.stringify(e.key)), [JSON.stringify(e.key), e.value]]
    else if (e.op === 'delete') pairs = pairs.filter(([k]) => k !== JSON.stringify(e.key))
    else if (e.op === 'duplicate') pairs = [...pairs, [JSON.stringify(e.key), e.value]]
    else if (e.op === 'replace') whole = e.value
    else cut = e.at
  }
  const out = whole ?? `{${pairs.map(([k, v]) => `${k}:${v}`).join(',')}}`
  return cut === undefined ? out : out.slice(0, cut % (out.length + 1))
}

// ---- token variants ----

const HEADER_KEYS = ['alg', 'typ', 'kid', 'crit', 'b64', 'jku', 'jwk', 'x5u', 'x5c', 'zip', 'enc', 'cty', 'sshpop']
const PAYLOAD_KEYS = [
  'iss',
  'aud',
  'sub',
  'exp',
  'iat',
  'nbf',
  'jti',
  'azp',
  'repository',
  'ref',
  'actor',
  'run_id',
  'principals',
  'email',
  'email_verified',
]

/** One change to a JWT: its header or payload JSON, its signature bytes, or its segments. */
const tokenMutation = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      part: fc.constant('header' as const),
      edits: fc.array(objectEdit(HEADER_KEYS), {minLength: 1, maxLength: 3}),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      part: fc.constant('payload' as const),
      edits: fc.array(objectEdit(PAYLOAD_KEYS), {minLength: 1, maxLength: 3}),
    }),
  },
  {weight: 1, arbitrary: fc.record({part: fc.constant('sshpop' as const)})},
  {
    weight: 3,
    arbitrary: fc.record({
      part: fc.constant('signature' as const),
      how: fc.constantFrom(
        'flip',
        'last-char',
        'high-s',
        'truncate',
        'empty',
        'append',
        'random',
        'padding',
        'std-base64',
        'whitespace',
      ),
      at: fc.nat(),
      bytes: fc.uint8Array({minLength: 1, maxLength: 80}),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      part: fc.constant('structure' as const),
      how: fc.constantFrom(
        'drop-signature',
        'two-parts',
        'four-parts',
        'five-parts',
        'swap',
        'spaces',
        'dots',
        'upper',
        'huge',
        'none-alg',
        'empty-parts',
        'newline',
      ),
    }),
  },
)
type TokenMutation = typeof tokenMutation extends fc.Arbitrary<infer T> ? T : never

/** `token` with one mutation; `sshpopBytes` replaces the certificate a renewal token carries. */
function mutateToken(token: string, m: TokenMutation, sshpopBytes: Buffer): string {
  const [h, p, s] = token.split('.') as [string, string, string]
  switch (m.part) {
    case 'header':
      return `${b64u(editJson(unb64u(h), m.edits))}.${p}.${s}`
    case 'payload':
      return `${h}.${b64u(editJson(unb64u(p), m.edits))}.${s}`
    case 'sshpop': {
      const header = JSON.parse(unb64u(h)) as Record<string, unknown>
      return `${b64u(JSON.stringify({...header, sshpop: sshpopBytes.toString('base64')}))}.${p}.${s}`
    }
    case 'signature': {
      const sig = Buffer.from(s, 'base64url')
      const at = sig.length === 0 ? 0 : m.at % sig.length
      switch (m.how) {
        case 'flip':
          sig[at]! ^= 1 << (m.at % 8)
          return `${h}.${p}.${b64u(sig)}`
        case 'last-char': {
          // the last base64url character carries bits no decoder looks at: a different string, same bytes
          const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
          const last = s.at(-1)!
          return `${h}.${p}.${s.slice(0, -1)}${alphabet[(alphabet.indexOf(last) + 1 + (m.at % 3)) % 64]}`
        }
        case 'high-s': {
          if (sig.length !== 64) return `${h}.${p}.${b64u(Buffer.concat([sig, Buffer.from(m.bytes)]))}`
          const sv = BigInt(`0x${sig.subarray(32).toString('hex')}`)
          return `${h}.${p}.${b64u(Buffer.concat([sig.subarray(0, 32), Buffer.from((P256_N - sv).toString(16).padStart(64, '0'), 'hex')]))}`
        }
        case 'truncate':
          return `${h}.${p}.${b64u(sig.subarray(0, at))}`
        case 'empty':
          return `${h}.${p}.`
        case 'append':
          return `${h}.${p}.${b64u(Buffer.concat([sig, Buffer.from(m.bytes)]))}`
        case 'random':
          return `${h}.${p}.${b64u(Buffer.from(m.bytes))}`
        case 'padding':
          return `${h}.${p}.${s}${'='.repeat((4 - (s.length % 4)) % 4 || m.at % 3)}`
        case 'whitespace':
          return `${h}.${p}.${s.slice(0, at)}${[' ', '\t', '\n', '  '][m.at % 4]}${s.slice(at)}`
        case 'std-base64':
          return `${h}.${p}.${sig.toString('base64')}`
      }
      break
    }
    case 'structure':
      switch (m.how) {
        case 'drop-signature':
          return `${h}.${p}`
        case 'two-parts':
          return `${h}${p}.${s}`
        case 'four-parts':
          return `${h}.${p}.${s}.${s}`
        case 'five-parts':
          return `${h}.${p}.${s}.${h}.${p}`
        case 'swap':
          return `${p}.${h}.${s}`
        case 'spaces':
          return ` ${h}.${p}.${s} `
        case 'dots':
          return `${h}..${p}.${s}`
        case 'upper':
          return `${h.toUpperCase()}.${p}.${s}`
        case 'huge':
          return `${h}.${p}${'A'.repeat(9000)}.${s}`
        case 'none-alg':
          return `${b64u(JSON.stringify({...(JSON.parse(unb64u(h)) as object), alg: 'none'}))}.${p}.`
        case 'empty-parts':
          return '..'
        case 'newline':
          return `${h}.${p}\n.${s}`
      }
  }
  return token
}

// ---- the CA under test ----

const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'APPLICATION/JSON',
  'application/json; charset=utf-16',
  'application/json;charset=latin1',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/jsonx',
  'application/vnd.api+json',
  '',
  'application/octet-stream',
  '*/*',
  ';;',
  'application/json, text/plain',
]

describe('fuzz: the CA HTTP API', function () {
  let gh: GithubIssuer
  let t: TestCa
  let db: DatabaseSync
  let hostCert: {cert: Certificate; key: ReturnType<typeof fixedKey>}
  const subject = () => keyPool().ed25519[1]!
  const subjectB64 = () => subject().publicKey.blob.toString('base64')

  before(async function () {
    this.timeout(60_000)
    keyPool()
    gh = await startGithubIssuer('sshca-ci', 'ES256')
    t = await startTestCa(
      {
        // thousands of requests from one address: the rate limit is tested in ca-limits.test.ts
        limits: {rate: false},
        provisioners: [
          {
            name: 'ci',
            type: 'oidc',
            issuer: gh.issuer,
            audience: 'sshca-ci',
            maxTtl: '15m',
            rules: [
              {
                name: 'deploy',
                match: {repository: 'acme/app'},
                certificate: {
                  principals: ['deploy', '${actor}'],
                  keyId: 'gha:${repository}:${run_id}',
                  ttl: '5m',
                  extensions: ['permit-pty'],
                },
              },
              {
                name: 'by-ref',
                match: {repository: 'acme/ref', ref: 'refs/heads/main'},
                certificate: {principals: ['${ref}'], ttl: '5m'},
              },
            ],
          },
        ],
        // app.inject reaches the app in this thread; the worker threads are tested in ca-workers.test.ts
      },
      {workers: 0},
    )
    db = new DatabaseSync(join(t.init.dir, 'db', 'sshca.sqlite'), {readOnly: true})
    // a host certificate this CA issued, for renewal tokens
    const key = fixedKey('ecdsa', 'a')
    const res = await inject({
      method: 'POST',
      url: '/ssh/sign',
      headers: {'content-type': 'application/json'},
      body: JSON.stringify({
        publicKey: key.publicKey.blob.toString('base64'),
        ott: (await enrollment('web-0')).token,
        certType: 'host',
      }),
    })
    assert.equal(res.status, 201, res.body)
    hostCert = {cert: parseCertificate(Buffer.from((JSON.parse(res.body) as {crt: string}).crt, 'base64')), key}
  })
  after(async () => {
    db?.close()
    await t?.stop()
    await gh?.stop()
  })

  const issued = (): number =>
    Number((db.prepare('SELECT count(*) AS n FROM certificates').get() as {n: number | bigint}).n)
  const now = () => Math.floor(Date.now() / 1000)
  /** `keyFingerprint`: bound to that key (the fuzz's one subject key enrols under many names: key_in_use unbound). */
  const enrollment = (host: string, keyFingerprint?: string) =>
    mintEnrollmentToken(t.ca.runtime.material.enrollmentKey, {
      rootFingerprint: t.init.rootFingerprint,
      hostname: host,
      ttlSeconds: 600,
      now: now(),
      ...(keyFingerprint ? {keyFingerprint} : {}),
    })
  const pop = () =>
    mintSshpopToken(hostCert.key.keyObject, hostCert.cert, {
      caUrl: t.url,
      action: 'renew',
      provisioner: SSHPOP_PROVISIONER,
      rootFingerprint: t.init.rootFingerprint,
      now: now(),
    })
  /** A renewal supersedes the certificate it renewed: the next proof must carry the new one. */
  const adopt = (family: Family, res: {status: number; body: string}): void => {
    if (family === 'renew' && res.status === 201)
      hostCert.cert = parseCertificate(Buffer.from((JSON.parse(res.body) as {crt: string}).crt, 'base64'))
  }

  async function inject(r: Req): Promise<Res> {
    const res = await t.ca.app!.inject({
      method: r.method,
      url: r.url,
      headers: r.headers,
      ...(r.body === undefined ? {} : {payload: r.body}),
    })
    return {status: res.statusCode, headers: res.headers as Res['headers'], body: res.body}
  }

  async function https(r: Req): Promise<Res> {
    // a client cannot put CR, LF or NUL in a header value (undici refuses): the raw-TLS property does
    const headers = Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, v.replace(/[\r\n\0]/g, '')]))
    const res = await request(`${t.url}${r.url}`, {
      method: r.method,
      dispatcher: t.dispatcher,
      headers,
      ...(r.body === undefined ? {} : {body: r.body}),
    })
    return {status: res.statusCode, headers: res.headers, body: await res.body.text()}
  }

  /** The response contract for a request that must not yield a certificate. */
  function assertRefused(res: Res, what: string): void {
    assert.ok(res.status >= 400 && res.status < 500, `${what}: HTTP ${res.status} ${res.body.slice(0, 300)}`)
    assert.match(String(res.headers['content-type']), /^application\/json/, `${what}: content type`)
    const body = JSON.parse(res.body) as Record<string, unknown>
    assert.deepEqual(
      Object.keys(body).sort(),
      ['message', 'request_id', 'status'],
      `${what}: ${res.body.slice(0, 300)}`,
    )
    assert.equal(body.status, res.status)
    assert.equal(typeof body.message, 'string')
    assert.ok((body.message as string).length > 0)
    assert.equal(body.request_id, res.headers['x-request-id'])
    assert.match(body.request_id as string, /^[0-9a-f-]{36}$/)
  }

  async function healthy(send: (r: Req) => Promise<Res>): Promise<void> {
    const h = await send({method: 'GET', url: '/health', headers: {}})
    assert.equal(h.status, 200)
    assert.deepEqual(JSON.parse(h.body), {status: 'ok', db: 'ok'})
  }

  /** A request on one of the signing routes carrying `token`, shaped like the route expects. */
  type Family = 'user' | 'oidc-ssh-ca' | 'host' | 'renew'
  function signingRequest(family: Family, prefix: string, token: string, publicKey = subjectB64()): Req {
    const json = {'content-type': 'application/json'}
    switch (family) {
      case 'user':
        return {method: 'POST', url: `${prefix}/ssh/sign`, headers: json, body: JSON.stringify({publicKey, ott: token})}
      case 'oidc-ssh-ca':
        return {
          method: 'POST',
          url: `${prefix}/sign`,
          headers: {...json, authorization: `Bearer ${token}`},
          body: JSON.stringify({public_key: `ssh-ed25519 ${publicKey} fuzz`}),
        }
      case 'host':
        return {
          method: 'POST',
          url: `${prefix}/ssh/sign`,
          headers: json,
          body: JSON.stringify({publicKey, ott: token, certType: 'host'}),
        }
      case 'renew':
        return {method: 'POST', url: `${prefix}/ssh/renew`, headers: json, body: JSON.stringify({ott: token})}
    }
  }

  let hosts = 0
  async function freshToken(family: Family, withJti: boolean, claims: Record<string, unknown> = {}): Promise<string> {
    if (family === 'host') return (await enrollment(`web-${++hosts}`, subject().publicKey.fingerprint())).token
    if (family === 'renew') return pop()
    return gh.mint(withJti ? claims : {...claims, jti: undefined})
  }

  property(
    'a spent token: the original got its certificate, no variant of it gets another (header, payload, signature, structure)',
    200,
    fc.asyncProperty(
      fc.constantFrom<Family>('user', 'oidc-ssh-ca', 'host', 'renew'),
      fc.constantFrom(...PREFIXES),
      fc.boolean(),
      fc.array(tokenMutation, {minLength: 1, maxLength: 4}),
      // the certificate a renewal token carries, mutated (generated when the CA is up)
      mutated(fc.constant(0).map(() => hostCert.cert.blob)),
      async (family, prefix, withJti, mutations, sshpop) => {
        const token = await freshToken(family, withJti)
        const before = issued()
        const first = await inject(signingRequest(family, prefix, token))
        assert.ok(
          first.status === 201 || first.status === 200,
          `the unmodified token was refused: ${first.status} ${first.body}`,
        )
        adopt(family, first)
        for (const m of mutations) {
          const variant = mutateToken(token, m, sshpop)
          const res = await inject(signingRequest(family, prefix, variant))
          assertRefused(res, `${family} ${JSON.stringify(m).slice(0, 200)} → ${variant.slice(0, 120)}`)
        }
        // the same token again, too
        assertRefused(await inject(signingRequest(family, prefix, token)), 'the same token twice')
        assert.equal(issued(), before + 1)
      },
    ),
  )

  /**
   * JWT-shaped strings from scratch: edited headers and payloads that route to the CA's provisioner
   * (or almost), and a signature of random bytes. None of them is signed by the issuer.
   */
  const jwtShaped = fc
    .tuple(
      fc.array(objectEdit(HEADER_KEYS), {maxLength: 3}),
      fc.array(objectEdit(PAYLOAD_KEYS), {maxLength: 3}),
      fc.uint8Array({maxLength: 96}),
      fc.boolean(),
    )
    .map(([he, pe, sig, enroll]) => {
      const header = JSON.stringify(
        enroll ? {alg: 'EdDSA', typ: 'sshca-enroll+jwt'} : {alg: 'ES256', kid: gh.kid, typ: 'JWT'},
      )
      const payload = JSON.stringify({
        iss: enroll ? `sshca:${t.init.rootFingerprint}` : gh.issuer,
        aud: enroll ? 'sshca-host-enrollment' : 'sshca-ci',
        sub: 'web',
        repository: 'acme/app',
        actor: 'octocat',
        iat: now(),
        exp: now() + 300,
        jti: 'j',
      })
      return `${b64u(editJson(header, he))}.${b64u(editJson(payload, pe))}.${b64u(Buffer.from(sig))}`
    })
  /** A key as the routes take it (base64 wire blob, or an authorized_keys line), intact or not. */
  const keyField = fc.oneof(
    rawJson,
    {weight: 3, arbitrary: fc.constant(0).map(() => JSON.stringify(subjectB64()))},
    fc.constant(0).map(() => JSON.stringify(subject().publicKey.toLine('c'))),
    mutated(fc.constant(0).map(() => subject().publicKey.blob)).map((b) => JSON.stringify(b.toString('base64'))),
    mutated(fc.constant(0).map(() => Buffer.from(subject().publicKey.toLine('c')))).map((b) =>
      JSON.stringify(b.toString('latin1')),
    ),
    fc.base64String({maxLength: 200}).map((b) => JSON.stringify(b)),
  )
  const tokenField = fc.oneof(
    {weight: 1, arbitrary: rawJson},
    {weight: 3, arbitrary: jwtShaped.map((j) => JSON.stringify(j))},
  )
  /** Objects with the routes' field names holding anything, and more fields (some twice) around them. */
  const fieldsBody = fc
    .tuple(
      keyField,
      keyField,
      tokenField,
      fc.array(
        fc.tuple(
          fc.constantFrom(
            'publicKey',
            'public_key',
            'ott',
            'certType',
            'principals',
            'keyID',
            'validBefore',
            '__proto__',
          ),
          rawJson,
        ),
        {maxLength: 3},
      ),
      fc.nat(),
    )
    .map(([pk, line, ott, extras, order]) => {
      const fs: [string, string][] = [
        ['publicKey', pk],
        ['public_key', line],
        ['ott', ott],
        ...(order % 4 === 0 ? [['certType', '"host"'] as [string, string]] : []),
        ...extras,
      ]
      if (order % 3 === 1) fs.reverse()
      return `{${fs.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`
    })

  property(
    'garbage bodies, JWT-shaped tokens, content types and headers on every signing route: 4xx JSON, nothing issued',
    1000,
    fc.asyncProperty(
      fc.constantFrom('/ssh/sign', '/sign', '/ssh/renew'),
      fc.constantFrom(...PREFIXES),
      fc.oneof(
        {weight: 6, arbitrary: fieldsBody},
        {weight: 2, arbitrary: rawJson},
        // not JSON at all
        {weight: 1, arbitrary: fc.string({maxLength: 200})},
        {weight: 1, arbitrary: fc.uint8Array({maxLength: 300}).map((b) => Buffer.from(b))},
        {
          weight: 1,
          arbitrary: fc.constantFrom(
            '',
            '{',
            '{"a":1}garbage',
            '\ufeff{"ott":"x","publicKey":"AAAA"}',
            'null',
            '[]',
            '{"ott":"x"'.repeat(200),
            `{"publicKey":"${'A'.repeat(17_000)}"}`,
          ),
        },
      ),
      fc.oneof(
        {weight: 6, arbitrary: fc.constant('application/json')},
        {weight: 4, arbitrary: fc.constantFrom(...CONTENT_TYPES)},
      ),
      fc.option(
        fc.oneof(
          jwtShaped.map((j) => `Bearer ${j}`),
          fc.constantFrom(
            'Bearer',
            'Bearer ',
            'Basic Zm9vOmJhcg==',
            'Bearer a b',
            'bearer x.y.z',
            `Bearer ${'A'.repeat(9000)}`,
          ),
          fc.string({maxLength: 60}).map((s) => `Bearer ${s}`),
        ),
        {freq: 3},
      ),
      async (route, prefix, body, contentType, authorization) => {
        const before = issued()
        const headers: Record<string, string> = contentType === '' ? {} : {'content-type': contentType}
        if (authorization !== null) headers.authorization = authorization.replace(/[\r\n\0]/g, '')
        const res = await inject({method: 'POST', url: `${prefix}${route}`, headers, body})
        assertRefused(res, `${route} ${contentType} ${String(body).slice(0, 100)}`)
        assert.equal(issued(), before)
      },
    ),
  )

  property(
    'validly signed tokens with hostile claim values: a certificate only with safe principals, else 4xx',
    250,
    fc.asyncProperty(
      fc.record({
        repository: fc.oneof(fc.constant('acme/app'), fc.constant('acme/ref'), fc.string({maxLength: 20})),
        actor: fc.oneof(
          fc.constantFrom('octocat', 'root', '', '../etc', 'a,b', 'a b', '*', 'x'.repeat(300)),
          fc.string({unit: 'grapheme', maxLength: 30}),
          fc.jsonValue({maxDepth: 2}),
        ),
        ref: fc.oneof(
          fc.constantFrom('refs/heads/main', 'refs/heads/main\n', 'REFS/HEADS/MAIN'),
          fc.jsonValue({maxDepth: 2}),
        ),
        run_id: fc.oneof(fc.string({maxLength: 20}), fc.integer(), fc.jsonValue({maxDepth: 1})),
        aud: fc.oneof(
          fc.constant('sshca-ci'),
          fc.constant(['sshca-ci', 'other']),
          fc.constant(['other']),
          fc.jsonValue({maxDepth: 1}),
        ),
        extra: fc.dictionary(fc.string({maxLength: 8}), fc.jsonValue({maxDepth: 3}), {maxKeys: 4}),
      }),
      fc.constantFrom(...PREFIXES),
      async (c, prefix) => {
        const token = await gh.mint({
          ...c.extra,
          repository: c.repository,
          actor: c.actor,
          ref: c.ref,
          run_id: c.run_id,
          aud: c.aud,
        })
        const before = issued()
        const res = await inject(signingRequest('user', prefix, token))
        if (res.status !== 201) {
          assertRefused(res, `claims ${JSON.stringify(c).slice(0, 300)}`)
          assert.equal(issued(), before)
          return
        }
        const cert = parseCertificate(Buffer.from((JSON.parse(res.body) as {crt: string}).crt, 'base64'))
        assert.ok(cert.principals.length > 0)
        for (const p of cert.principals) assert.match(p, SAFE_VALUE)
        assert.match(cert.keyId, SAFE_VALUE)
        assert.equal(issued(), before + 1)
      },
    ),
  )

  property(
    'host enrollment with hostile requested principals: a certificate only for names the token binds, else 4xx',
    150,
    fc.asyncProperty(
      fc.constantFrom(...PREFIXES),
      fc.oneof(
        fc.array(
          fc.oneof(
            fc.constantFrom(
              'web-1',
              'web-1.example.com',
              'WEB-1',
              'web-1 ',
              '',
              '*',
              'root',
              'web-1\u0000',
              'web-1,root',
            ),
            fc.string({unit: 'grapheme', maxLength: 20}),
          ),
          {maxLength: 5},
        ),
        fc.jsonValue({maxDepth: 2}),
      ),
      async (prefix, principals) => {
        const bound = ['web-1', 'web-1.example.com']
        const token = await mintEnrollmentToken(t.ca.runtime.material.enrollmentKey, {
          rootFingerprint: t.init.rootFingerprint,
          hostname: 'web-1',
          principals: bound,
          ttlSeconds: 600,
          now: now(),
          // the fuzz's one subject key heads other names' lineages too: bound, so that issuance is what is tested
          keyFingerprint: subject().publicKey.fingerprint(),
        })
        const before = issued()
        const res = await inject({
          method: 'POST',
          url: `${prefix}/ssh/sign`,
          headers: {'content-type': 'application/json'},
          body: JSON.stringify({publicKey: subjectB64(), ott: token.token, certType: 'host', principals}),
        })
        if (res.status !== 201) {
          assertRefused(res, `principals ${JSON.stringify(principals).slice(0, 200)}`)
          assert.equal(issued(), before)
          return
        }
        const cert = parseCertificate(Buffer.from((JSON.parse(res.body) as {crt: string}).crt, 'base64'))
        assert.equal(cert.type, 'host')
        assert.ok(
          cert.principals.length > 0 && cert.principals.every((p) => bound.includes(p)),
          `issued for ${JSON.stringify(cert.principals)}`,
        )
        assert.equal(issued(), before + 1)
      },
    ),
  )

  property(
    'read routes with garbage paths and tokens (/root/:sha, /ssh/hosts, unknown routes): 4xx JSON',
    300,
    fc.asyncProperty(
      fc.constantFrom(...PREFIXES),
      fc.oneof(
        fc.string({maxLength: 80}).map((p) => `/root/${encodeURIComponent(p)}`),
        fc.constantFrom(
          '/root/',
          '/root/%00',
          '/root/%ff%fe',
          '/root/..%2f..%2fetc%2fpasswd',
          `/root/${'0'.repeat(64)}`,
          `/root/${'a'.repeat(5000)}`,
          '/ssh/hosts',
          '/ssh/hosts?x=1',
          '/nope',
          '/ssh/sign',
          '/%',
          '/ssh//sign',
          '//ssh/sign',
        ),
      ),
      fc.option(
        fc.oneof(
          jwtShaped.map((j) => `Bearer ${j}`),
          fc.string({maxLength: 40}).map((v) => v.replace(/[\r\n\0]/g, '')),
        ),
        {freq: 2},
      ),
      async (prefix, path, authorization) => {
        const res = await inject({
          method: 'GET',
          url: `${prefix}${path}`,
          headers: authorization === null ? {} : {authorization},
        })
        assertRefused(res, `GET ${prefix}${path}`)
      },
    ),
  )

  property(
    "step's other routes with hostile bodies (rekey, revoke, config, check-host, bastion, X.509 /sign): no 5xx, no certificate, no revocation",
    250,
    fc.asyncProperty(
      fc.constantFrom(...PREFIXES),
      fc.constantFrom(
        '/ssh/rekey',
        '/ssh/revoke',
        '/ssh/config',
        '/ssh/config/host',
        '/ssh/config/x',
        '/ssh/check-host',
        '/ssh/bastion',
        '/sign',
      ),
      fc.oneof(
        fc.jsonValue({maxDepth: 3}),
        fc.record(
          {
            // SSHPOP-shaped: this CA's host certificate in the header, or garbage there, with edits
            ott: fc.oneof(
              jwtShaped,
              fc.tuple(
                fc.oneof(fc.constant(OUR_HOST_CERT), fc.base64String({maxLength: 200}), fc.jsonValue({maxDepth: 1})),
                fc.uint8Array({maxLength: 80}),
              ),
            ),
            publicKey: fc.oneof(fc.constant('SUBJECT'), fc.base64String({maxLength: 100}), fc.jsonValue({maxDepth: 1})),
            serial: fc.oneof(fc.constant(OUR_HOST_CERT), fc.string({maxLength: 25}), fc.integer()),
            passive: fc.oneof(fc.boolean(), fc.jsonValue({maxDepth: 1})),
            reason: fc.oneof(fc.string({maxLength: 40}), fc.jsonValue({maxDepth: 1})),
            type: fc.oneof(fc.constantFrom('user', 'host', '', 'x'), fc.jsonValue({maxDepth: 1})),
            data: fc.oneof(
              fc.dictionary(
                fc.constantFrom('StepPath', 'User', 'Certificate', 'Key', 'GOOS', 'Context', 'x'),
                fc.oneof(fc.string({maxLength: 30}), fc.jsonValue({maxDepth: 1})),
              ),
              fc.jsonValue({maxDepth: 2}),
            ),
            principal: fc.oneof(fc.string({maxLength: 300}), fc.jsonValue({maxDepth: 1})),
            hostname: fc.oneof(fc.string({maxLength: 300}), fc.jsonValue({maxDepth: 1})),
            csr: fc.oneof(fc.string({maxLength: 200}), fc.jsonValue({maxDepth: 1})),
          },
          {requiredKeys: []},
        ),
      ),
      async (prefix, route, generated) => {
        // the CA's own host certificate, only known once the CA runs, goes where the arbitraries put a marker
        const body =
          typeof generated === 'object' && generated !== null && !Array.isArray(generated)
            ? {...(generated as Record<string, unknown>)}
            : generated
        if (body && typeof body === 'object' && !Array.isArray(body)) {
          const b = body as Record<string, unknown>
          if (Array.isArray(b.ott)) {
            const [pop, sig] = b.ott as [unknown, Uint8Array]
            const header = {
              alg: 'ES256',
              typ: 'JWT',
              sshpop: pop === OUR_HOST_CERT ? hostCert.cert.blob.toString('base64') : pop,
            }
            b.ott = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify({iss: 'sshpop', sub: String(hostCert.cert.serial), aud: `${t.url}/1.0/ssh/revoke#sshpop/sshpop`, iat: now(), exp: now() + 60, jti: 'x'}))}.${b64u(Buffer.from(sig))}`
          }
          if (b.serial === OUR_HOST_CERT) b.serial = String(hostCert.cert.serial)
          if (b.publicKey === 'SUBJECT') b.publicKey = subjectB64()
        }
        const before = issued()
        const revocations = Number(
          (db.prepare('SELECT count(*) AS n FROM revocations').get() as {n: number | bigint}).n,
        )
        const res = await inject({
          method: 'POST',
          url: `${prefix}${route}`,
          headers: {'content-type': 'application/json'},
          body: JSON.stringify(body),
        })
        const what = `POST ${prefix}${route} ${JSON.stringify(body).slice(0, 200)}`
        if (res.status === 200 && /^\/ssh\/(config|bastion)/.test(route)) return
        if (res.status === 501) return
        assertRefused(res, what)
        assert.equal(issued(), before, what)
        assert.equal(
          Number((db.prepare('SELECT count(*) AS n FROM revocations').get() as {n: number | bigint}).n),
          revocations,
          what,
        )
      },
    ),
  )

  property(
    'over real HTTPS too: garbage and token variants get 4xx JSON, and the CA keeps serving',
    40,
    fc.asyncProperty(
      fc.constantFrom<Family>('user', 'oidc-ssh-ca', 'host', 'renew'),
      fc.constantFrom(...PREFIXES),
      fc.boolean(),
      tokenMutation,
      fc.oneof(rawJson, fc.string({maxLength: 100})),
      fc.constantFrom(...CONTENT_TYPES),
      async (family, prefix, withJti, m, body, contentType) => {
        const before = issued()
        const token = await freshToken(family, withJti)
        const first = await https(signingRequest(family, prefix, token))
        assert.ok(
          first.status === 201 || first.status === 200,
          `the unmodified token was refused: ${first.status} ${first.body}`,
        )
        adopt(family, first)
        assertRefused(
          await https(signingRequest(family, prefix, mutateToken(token, m, hostCert.cert.blob))),
          `https ${family} ${JSON.stringify(m).slice(0, 200)}`,
        )
        const route = family === 'renew' ? '/ssh/renew' : family === 'oidc-ssh-ca' ? '/sign' : '/ssh/sign'
        assertRefused(
          await https({
            method: 'POST',
            url: `${prefix}${route}`,
            headers: contentType === '' ? {} : {'content-type': contentType},
            body,
          }),
          `https ${route} ${contentType}`,
        )
        await healthy(https)
        assert.equal(issued(), before + 1)
      },
    ),
  )

  property(
    'malformed HTTP over TLS (bad framing, smuggling, huge or broken headers): 4xx JSON or nothing, and the CA keeps serving',
    25,
    fc.asyncProperty(
      fc.constantFrom(
        'POST /ssh/sign HTTP/1.1',
        'POST /1.0/sign HTTP/1.1',
        'POST /ssh/renew HTTP/1.0',
        'GARBAGE',
        'POST /ssh/sign HTTP/9.9',
        'POST  /ssh/sign HTTP/1.1',
        'POST /ssh/sign\x00 HTTP/1.1',
        'POST http://evil/ssh/sign HTTP/1.1',
        'GET /% HTTP/1.1',
        'POST /1.0/ssh/sign%zz HTTP/1.1',
        `POST /${'a'.repeat(20_000)} HTTP/1.1`,
      ),
      fc.array(
        fc.oneof(
          fc.constantFrom(
            'Content-Length: abc',
            'Content-Length: -1',
            'Content-Length: 2',
            'Content-Length: 2\r\nContent-Length: 3',
            'Transfer-Encoding: chunked',
            'Transfer-Encoding: chunked, identity',
            'Transfer-Encoding: xchunked',
            'Content-Type: application/json',
            'Authorization: Bearer a.b.c',
            'X-Folded: a\r\n b',
            'Bad Header: x',
            ': empty',
            'X-Nul: a\u0000b',
            `X-Big: ${'b'.repeat(20_000)}`,
            'Expect: 100-continue',
            'Content-Encoding: gzip',
          ),
          fc.string({unit: 'grapheme-ascii', maxLength: 40}).map((v) => `X-Fuzz: ${v.replace(/[\r\n]/g, '')}`),
        ),
        {maxLength: 5},
      ),
      fc.oneof(
        fc.constantFrom(
          '{}',
          '0\r\n\r\n',
          'zz\r\nxx\r\n0\r\n\r\n',
          '5\r\n{"a":\r\n0\r\n\r\n',
          '{"ott":"x"}GET /health HTTP/1.1\r\nHost: x\r\n\r\n',
        ),
        fc.string({maxLength: 60}),
      ),
      async (line, headers, body) => {
        const raw = `${line}\r\nHost: 127.0.0.1\r\n${headers.map((h) => `${h}\r\n`).join('')}Connection: close\r\n\r\n${body}`
        const reply = await rawTls(raw)
        for (const res of parseResponses(reply)) assertRefused(res, `raw ${JSON.stringify(raw.slice(0, 200))}`)
        await healthy(https)
      },
    ),
  )

  /** Sends `raw` over TLS and reads until the server closes (or 3 s pass: a request it still waits on). */
  function rawTls(raw: string): Promise<Buffer> {
    return new Promise((resolve) => {
      const chunks: Buffer[] = []
      const s = tlsConnect(
        {host: '127.0.0.1', port: t.ca.port, ca: t.rootPem, checkServerIdentity: () => undefined},
        () => s.write(raw),
      )
      const done = () => {
        clearTimeout(timer)
        s.destroy()
        resolve(Buffer.concat(chunks))
      }
      const timer = setTimeout(done, 3000)
      s.on('data', (d: Buffer) => chunks.push(d))
      s.on('end', done)
      s.on('close', done)
      s.on('error', done)
    })
  }

  it('is still alive and audited no internal error after all of that', async () => {
    await healthy(inject)
    await healthy(https)
    const internal = t.audit().filter((l) => l.reason === 'internal_error' || l.status === 500)
    assert.deepEqual(internal, [])
  })
})

/** The HTTP/1.1 responses in `raw` (content-length framed, as the CA writes them). */
function parseResponses(raw: Buffer): Res[] {
  const out: Res[] = []
  let rest = raw
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n')
    assert.ok(end > 0, `not an HTTP response: ${JSON.stringify(rest.toString('latin1').slice(0, 200))}`)
    const [statusLine, ...lines] = rest.subarray(0, end).toString('latin1').split('\r\n')
    const m = /^HTTP\/1\.[01] (\d{3}) /.exec(statusLine!)
    assert.ok(m, `not a status line: ${statusLine}`)
    const headers: Record<string, string> = {}
    for (const l of lines) {
      const i = l.indexOf(':')
      headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim()
    }
    // an interim response (100 Continue) has no body, and a final one follows
    if (m[1]!.startsWith('1')) {
      rest = rest.subarray(end + 4)
      continue
    }
    assert.ok(headers['content-length'] !== undefined, `no content-length: ${lines.join(' | ')}`)
    const len = Number(headers['content-length'])
    out.push({status: Number(m[1]), headers, body: rest.subarray(end + 4, end + 4 + len).toString('utf8')})
    rest = rest.subarray(end + 4 + len)
  }
  return out
}
