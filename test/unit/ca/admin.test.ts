/**
 * The CA operator's commands in process (src/ca/admin.ts): `ca revoke` by serial, key ID, key and
 * subject, `ca unrevoke`, `ca revocations`, `ca certs`, `ca hosts`, `ca token`, `ca migrate`, each
 * against a real CA directory (initCa, its sealed keys) and its real SQLite store. Certificates are
 * put in the store the way the signing pipeline records them (store.issue); what the commands
 * return and what the store holds afterwards are what is asserted.
 */
import assert from 'node:assert/strict'
import {generateKeyPairSync} from 'node:crypto'
import {cpSync, existsSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {DatabaseSync} from 'node:sqlite'
import {
  certs,
  hosts,
  hostToken,
  keyFingerprintArg,
  migrate,
  revocations,
  revoke,
  unrevoke,
} from '../../../src/ca/admin.ts'
import {loadConfig} from '../../../src/ca/config/config.ts'
import {caPaths} from '../../../src/ca/config/layout.ts'
import {certFingerprint, pemToDer} from '../../../src/ca/keys/pki.ts'
import {renderRevocations, renderRevoke} from '../../../src/cli/render-ca.ts'
import {readSealedKey, writeSealedKey} from '../../../src/ca/keys/keystore.ts'
import {verifyEnrollmentToken} from '../../../src/ca/provisioner/enrollment.ts'
import {tokenHash} from '../../../src/ca/provisioner/oidc.ts'
import {openStore} from '../../../src/ca/store/open.ts'
import {SCHEMA_VERSION} from '../../../src/ca/store/migrations.ts'
import type {IssuedRecord, Lineage, Store} from '../../../src/ca/store/store.ts'
import {certificateLine, signCertificate} from '../../../src/ssh/cert.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {MAX_ENROLLMENT_TTL} from '../../../src/protocol/tokens.ts'
import {record} from '../../contract/store.ts'
import {rejectsCode} from '../../helpers/assert.ts'
import {makeCaDir, PASSWORD} from '../../helpers/ca.ts'
import {tempDir} from '../../helpers/tmp.ts'

const NOW = 1_700_000_000
const clock = () => NOW * 1000 + 999 // the milliseconds are dropped
const iso = (s: number | bigint) => new Date(Number(s) * 1000).toISOString()
const HOUR = 3600n

let template: string
let n = 0
/** A fresh copy of one initialised CA directory: its ca.yaml. */
const freshCa = (): string => {
  const dir = join(tempDir('sshca-admin-'), 'ca')
  cpSync(template, dir, {recursive: true})
  return join(dir, 'ca.yaml')
}

async function withCaStore<T>(configPath: string, fn: (s: Store) => Promise<T>): Promise<T> {
  const {config} = await loadConfig(configPath)
  const s = await openStore(config, 'admin')
  try {
    return await fn(s)
  } finally {
    await s.close()
  }
}

/** Records certificates as the signing pipeline does (host ones start their lineage). */
async function seed(configPath: string, ...recs: IssuedRecord[]): Promise<void> {
  await withCaStore(configPath, async (s) => {
    for (const r of recs) {
      const lineage: Lineage | undefined = r.certType === 'host' ? {kind: 'enrol'} : undefined
      const out = await s.issue({
        token: {id: `tok-${++n}`, expiresAt: NOW + 60, issuedAt: NOW},
        record: r,
        ...(lineage ? {lineage} : {}),
      })
      assert.equal(out.ok, true)
    }
  })
}

/** What the store holds afterwards: revocations and admin events. */
const state = (configPath: string) =>
  withCaStore(configPath, async (s) => ({
    revocations: await s.revocations(),
    events: (await s.adminEventsAfter(0, 100)).map((e) => ({event: e.event, at: e.at, fields: e.fields})),
  }))

const covered = (configPath: string, c: IssuedRecord) =>
  withCaStore(configPath, (s) => s.revocationFor(c)).then((r) => r !== undefined)

/** A user certificate valid around NOW. */
const active = (over: Partial<IssuedRecord>) =>
  record({validAfter: BigInt(NOW) - HOUR, validBefore: BigInt(NOW) + HOUR, issuedAt: NOW - 60, ...over})

let hostKey: ReturnType<typeof generatePrivateKey>
let keyFile: string

describe('the CA admin commands, in process', function () {
  this.timeout(60_000)

  before(async () => {
    const {init} = await makeCaDir({})
    template = init.dir
    hostKey = generatePrivateKey('ed25519')
    keyFile = join(tempDir(), 'host.pub')
    writeFileSync(keyFile, `${hostKey.publicKey.toLine('root@web1')}\n`)
  })

  describe('revoke --subject', () => {
    it('revokes by serial every certificate of that subject still valid now, and none other', async () => {
      const cfg = freshCa()
      const a1 = active({serial: 101n, subject: 'sub-alice', keyId: 'alice@1', principals: ['alice', 'ops']})
      const a2 = active({serial: 102n, subject: 'sub-alice', keyId: 'alice@2', certType: 'user'})
      const expired = active({serial: 103n, subject: 'sub-alice', validBefore: BigInt(NOW)})
      const future = active({serial: 104n, subject: 'sub-alice', validAfter: BigInt(NOW) + 1n})
      const bob = active({serial: 105n, subject: 'sub-bob'})
      await seed(cfg, a1, a2, expired, future, bob)
      const r = await revoke({configPath: cfg, subject: 'sub-alice', reason: 'left the company', clock})
      assert.equal(r.kind, 'subject')
      assert.equal(r.reason, 'left the company')
      assert.equal(r.blocksFutureCertificates, false)
      assert.deepEqual(
        [...r.certificates].sort((x, y) => x.serial.localeCompare(y.serial)),
        [
          {
            serial: '101',
            keyId: 'alice@1',
            principals: ['alice', 'ops'],
            certType: 'user',
            validBefore: iso(NOW + 3600),
          },
          {serial: '102', keyId: 'alice@2', principals: ['alice'], certType: 'user', validBefore: iso(NOW + 3600)},
        ],
      )
      assert.deepEqual(r.revocations.map((v) => v.serial).sort(), ['101', '102'])
      // user certificates have no lineage to follow: no --key-id hint for them
      assert.deepEqual([r.descendants, r.hostKeyIds], [[], []])
      for (const v of r.revocations) {
        assert.match(v.id, /./)
        assert.equal(v.keyId, null)
        assert.equal(v.keyFingerprint, null)
        assert.equal(v.reason, 'left the company')
        assert.equal(v.revokedAt, iso(NOW))
      }
      const st = await state(cfg)
      assert.deepEqual(st.revocations.map((x) => x.serial).sort(), [101n, 102n])
      assert.deepEqual(
        st.revocations.map((x) => [x.keyId, x.keyFingerprint, x.reason, x.revokedAt]),
        [
          [null, null, 'left the company', NOW],
          [null, null, 'left the company', NOW],
        ],
      )
      assert.equal(await covered(cfg, expired), false)
      assert.equal(await covered(cfg, future), false)
      assert.equal(await covered(cfg, bob), false)
      assert.equal(await covered(cfg, a1), true)
      assert.deepEqual(st.events, [
        {
          event: 'certificate_revoked',
          at: NOW,
          fields: {
            kind: 'subject',
            reason: 'left the company',
            revocations: r.revocations,
            certificates: r.certificates.map((c) => c.serial),
            descendants: [],
          },
        },
      ])
    })

    it('a subject with nothing valid now revokes nothing and still records the command', async () => {
      const cfg = freshCa()
      await seed(cfg, active({serial: 201n, subject: 'sub-carol', validBefore: BigInt(NOW) - 1n}))
      const r = await revoke({configPath: cfg, subject: 'sub-carol', clock})
      assert.deepEqual(r.revocations, [])
      assert.deepEqual(r.certificates, [])
      assert.equal(r.reason, 'unspecified')
      const st = await state(cfg)
      assert.deepEqual(st.revocations, [])
      assert.deepEqual(
        st.events.map((e) => [e.event, e.fields.kind, e.fields.certificates]),
        [['certificate_revoked', 'subject', []]],
      )
    })
  })

  describe('revoke --serial', () => {
    it('revokes that serial, names the certificate when this CA issued it, blocks no future certificate', async () => {
      const cfg = freshCa()
      const c = active({serial: 301n, keyId: 'k301', subject: 's', certType: 'host', principals: ['web1']})
      const other = active({serial: 302n, keyId: 'k301', subject: 's'})
      await seed(cfg, c, other)
      const r = await revoke({configPath: cfg, serial: '301', reason: 'key compromise', clock})
      assert.equal(r.kind, 'serial')
      assert.equal(r.blocksFutureCertificates, false)
      assert.deepEqual(r.certificates, [
        {serial: '301', keyId: 'k301', principals: ['web1'], certType: 'host', validBefore: iso(NOW + 3600)},
      ])
      // a host certificate enrolled with its parent recorded, and nothing renewed from it: nothing more to say
      assert.deepEqual(r.descendants, [])
      assert.deepEqual(r.hostKeyIds, [])
      assert.doesNotMatch(renderRevoke(r, cfg), /--key-id|Undo|Also revoked/)
      assert.equal(r.revocations.length, 1)
      const {id, ...rest} = r.revocations[0]!
      assert.deepEqual(rest, {
        serial: '301',
        keyId: null,
        keyFingerprint: null,
        reason: 'key compromise',
        revokedAt: iso(NOW),
      })
      const st = await state(cfg)
      assert.deepEqual(st.revocations, [
        {id, serial: 301n, keyId: null, keyFingerprint: null, reason: 'key compromise', revokedAt: NOW},
      ])
      assert.equal(await covered(cfg, other), false)
    })

    it('a host certificate: what was renewed or rekeyed from it is revoked too, named, and unrevoked with it', async () => {
      const cfg = freshCa()
      const host = (over: Partial<IssuedRecord>) => active({certType: 'host', keyId: 'host:web1', ...over})
      const a = host({serial: 311n, keyFingerprint: 'SHA256:k1'})
      const b = host({serial: 313n, keyFingerprint: 'SHA256:k1'})
      const c = host({serial: 312n, keyFingerprint: 'SHA256:k2'})
      await seed(cfg, a)
      await withCaStore(cfg, async (s) => {
        const tok = () => ({id: `tok-${++n}`, expiresAt: NOW + 60, issuedAt: NOW})
        assert.deepEqual(await s.issue({token: tok(), record: b, lineage: {kind: 'renew', parent: a.serial}}), {
          ok: true,
        })
        const rekey = {kind: 'rekey', parent: b.serial, parentKey: 'SHA256:k1'} as const
        assert.deepEqual(await s.issue({token: tok(), record: c, lineage: rekey}), {ok: true})
      })
      const r = await revoke({configPath: cfg, serial: '311', reason: 'key stolen', clock})
      assert.deepEqual(r.descendants, ['312', '313'])
      assert.equal(r.revocations.length, 1)
      assert.deepEqual(r.hostKeyIds, [])
      const text = renderRevoke(r, cfg)
      assert.match(text, /^Also revoked: the 2 certificate\(s\) renewed or rekeyed from it, serial 312, 313\.$/m)
      assert.match(
        text,
        new RegExp(`^Undo \\(with those it renewed or rekeyed to\\): sshca ca unrevoke ${r.revocations[0]!.id} `, 'm'),
      )
      assert.doesNotMatch(text, /--key-id/)
      assert.equal(await covered(cfg, c), true)
      const st = await state(cfg)
      const root = r.revocations[0]!.id
      assert.deepEqual(
        st.revocations.map((x) => [x.serial, x.cascadeOf]).sort((x, y) => Number(x[0]) - Number(y[0])),
        [
          [311n, undefined],
          [312n, root],
          [313n, root],
        ],
      )
      assert.deepEqual(st.events[0]!.fields.descendants, ['312', '313'])
      assert.deepEqual(renderRevocations(r.revocations).includes('descends'), false)
      const listed = renderRevocations((await revocations({configPath: cfg})).revocations)
      assert.match(listed, new RegExp(`serial 312 \\(descends from what ${root} revokes\\)`))
      // ca unrevoke of the revocation lifts the two it brought with it, in the same event
      const u = await unrevoke({configPath: cfg, id: root, clock})
      assert.deepEqual(u.descendants, ['312', '313'])
      const after = await state(cfg)
      assert.deepEqual(after.revocations, [])
      assert.deepEqual(after.events[1]!.fields.descendants, ['312', '313'])
      assert.equal(await covered(cfg, c), false)
    })

    it('a host certificate from before the store recorded parents: the --key-id revocation is named, for what it renewed to before', async () => {
      const cfg = freshCa()
      // recorded as schema 5 recorded it: no lineage, no parent
      const old = active({
        serial: 321n,
        keyId: 'host:legacy',
        certType: 'host',
        keyFingerprint: hostKey.publicKey.fingerprint(),
      })
      await withCaStore(cfg, async (s) => {
        assert.deepEqual(await s.issue({token: {id: `tok-${++n}`, expiresAt: NOW + 60, issuedAt: NOW}, record: old}), {
          ok: true,
        })
      })
      // an expired one of the same key (it may have been rekeyed before it expired), another host's
      const expired = active({
        serial: 322n,
        keyId: 'host:legacy-before',
        certType: 'host',
        keyFingerprint: hostKey.publicKey.fingerprint(),
        validBefore: BigInt(NOW),
        issuedAt: NOW - 7200,
      })
      const another = active({serial: 323n, keyId: 'host:elsewhere', certType: 'host', keyFingerprint: 'SHA256:else'})
      await withCaStore(cfg, async (s) => {
        for (const rec of [expired, another])
          assert.deepEqual(
            await s.issue({token: {id: `tok-${++n}`, expiresAt: NOW + 60, issuedAt: NOW}, record: rec}),
            {
              ok: true,
            },
          )
      })
      const r = await revoke({configPath: cfg, serial: '321', clock})
      assert.deepEqual(r.hostKeyIds, ['host:legacy'])
      assert.match(
        renderRevoke(r, cfg),
        /before that upgrade is not covered and may still work\. To end them all: sshca ca revoke --key-id "host:legacy"/,
      )
      // by key: every certificate of the key ever issued before the upgrade, expired ones too, no other host's
      const byKey = await revoke({configPath: cfg, key: keyFile, clock})
      assert.deepEqual(byKey.hostKeyIds, ['host:legacy', 'host:legacy-before'])
      // by key ID: that revocation is the hint itself, nothing more to name
      const byKeyId = await revoke({configPath: cfg, keyId: 'host:legacy', clock})
      assert.deepEqual([byKeyId.certificates.length, byKeyId.hostKeyIds], [1, []])
      assert.doesNotMatch(renderRevoke(byKeyId, cfg), /To end them all/)
    })

    it('revoke --subject of a host: the renewals (their subject is the key ID) are named as descendants in numeric order, those revoked in their own right not', async () => {
      const cfg = freshCa()
      const host = (serial: bigint, subject: string, keyFingerprint: string) =>
        active({serial, subject, keyFingerprint, certType: 'host', keyId: 'host:web1'})
      // two keys of web1, each enrolled (subject web1) and renewed (subject host:web1, as host.ts records it)
      const x = host(400n, 'web1', 'SHA256:web1-k1')
      const z = host(410n, 'web1', 'SHA256:web1-k2')
      await seed(cfg, x, z)
      await withCaStore(cfg, async (s) => {
        const renew = (record: IssuedRecord, parent: bigint) =>
          s.issue({
            token: {id: `tok-${++n}`, expiresAt: NOW + 60, issuedAt: NOW},
            record,
            lineage: {kind: 'renew', parent},
          })
        assert.deepEqual(await renew(host(450n, 'host:web1', 'SHA256:web1-k1'), 400n), {ok: true})
        assert.deepEqual(await renew(host(405n, 'host:web1', 'SHA256:web1-k2'), 410n), {ok: true})
        // and one renewed under the subject web1 itself: revoked as the subject's, not as a descendant
        assert.deepEqual(await renew(host(430n, 'web1', 'SHA256:web1-k2'), 405n), {ok: true})
      })
      const r = await revoke({configPath: cfg, subject: 'web1', clock})
      assert.deepEqual(r.certificates.map((c) => c.serial).sort(), ['400', '410', '430'])
      assert.deepEqual(r.descendants, ['405', '450'])
      const st = await state(cfg)
      assert.deepEqual(new Set(st.revocations.map((v) => v.serial)), new Set([400n, 410n, 430n, 405n, 450n]))
    })

    it('revokes a serial this CA has no record of (the revocation stands, no certificate is named)', async () => {
      const cfg = freshCa()
      const r = await revoke({configPath: cfg, serial: '18446744073709551615', clock})
      assert.deepEqual(r.certificates, [])
      assert.equal(r.revocations[0]!.serial, '18446744073709551615')
      assert.deepEqual(
        (await state(cfg)).revocations.map((x) => x.serial),
        [0xffff_ffff_ffff_ffffn],
      )
    })

    it('an expired certificate is still named when revoked by its serial', async () => {
      const cfg = freshCa()
      await seed(cfg, active({serial: 303n, validBefore: BigInt(NOW) - 10n}))
      const r = await revoke({configPath: cfg, serial: '303', clock})
      assert.deepEqual(
        r.certificates.map((c) => c.serial),
        ['303'],
      )
    })

    for (const bad of ['0', '007', '-1', '1.5', 'abc', '', ' 1', '1 ', '18446744073709551616', '123456789012345678901'])
      it(`refuses --serial ${JSON.stringify(bad)} and writes nothing`, async () => {
        const cfg = freshCa()
        await rejectsCode(revoke({configPath: cfg, serial: bad, clock}), 'ERR_USAGE')
        assert.deepEqual(await state(cfg), {revocations: [], events: []})
      })
  })

  describe('revoke --key-id and --key', () => {
    it('--key-id: one revocation of the key ID, names its certificates valid now, blocks future ones', async () => {
      const cfg = freshCa()
      const k1 = active({serial: 401n, keyId: 'deploy-bot'})
      const k2 = active({serial: 402n, keyId: 'deploy-bot', principals: ['deploy']})
      const old = active({serial: 403n, keyId: 'deploy-bot', validBefore: BigInt(NOW)})
      const other = active({serial: 404n, keyId: 'deploy-bot-2'})
      await seed(cfg, k1, k2, old, other)
      const r = await revoke({configPath: cfg, keyId: 'deploy-bot', reason: 'rotated', clock})
      assert.equal(r.kind, 'key-id')
      assert.equal(r.blocksFutureCertificates, true)
      assert.deepEqual(r.certificates.map((c) => c.serial).sort(), ['401', '402'])
      const {id, ...rest} = r.revocations[0]!
      assert.equal(r.revocations.length, 1)
      assert.deepEqual(rest, {
        serial: null,
        keyId: 'deploy-bot',
        keyFingerprint: null,
        reason: 'rotated',
        revokedAt: iso(NOW),
      })
      assert.deepEqual((await state(cfg)).revocations, [
        {id, serial: null, keyId: 'deploy-bot', keyFingerprint: null, reason: 'rotated', revokedAt: NOW},
      ])
      assert.equal(await covered(cfg, old), true) // every certificate of the key ID, expired or not
      assert.equal(await covered(cfg, other), false)
    })

    it('refuses an empty --key-id and writes nothing', async () => {
      const cfg = freshCa()
      await seed(cfg, active({serial: 405n, keyId: ''}))
      await rejectsCode(revoke({configPath: cfg, keyId: '', clock}), 'ERR_USAGE')
      assert.deepEqual((await state(cfg)).revocations, [])
      assert.deepEqual((await state(cfg)).events, [])
    })

    const keyCases: [string, () => string][] = [
      ['a fingerprint', () => hostKey.publicKey.fingerprint()],
      ['a public key file', () => keyFile],
      [
        'a file with comments and blank lines before the key',
        () => {
          const f = join(tempDir(), 'k.pub')
          writeFileSync(f, `# the web1 host key\n\n   \n${hostKey.publicKey.toLine()}\n`)
          return f
        },
      ],
    ]
    for (const [what, arg] of keyCases)
      it(`--key as ${what}: revokes the key, names its certificates valid now, blocks future ones`, async () => {
        const cfg = freshCa()
        const fp = hostKey.publicKey.fingerprint()
        const mine = active({serial: 501n, keyFingerprint: fp, certType: 'host', principals: ['web1']})
        const expired = active({serial: 502n, keyFingerprint: fp, validBefore: BigInt(NOW) - 1n})
        const other = active({serial: 503n, keyFingerprint: `SHA256:${'B'.repeat(43)}`})
        await seed(cfg, mine, expired, other)
        const r = await revoke({configPath: cfg, key: arg(), clock})
        assert.equal(r.kind, 'key')
        assert.equal(r.blocksFutureCertificates, true)
        assert.deepEqual(
          r.certificates.map((c) => c.serial),
          ['501'],
        )
        const {id, ...rest} = r.revocations[0]!
        assert.deepEqual(rest, {
          serial: null,
          keyId: null,
          keyFingerprint: fp,
          reason: 'unspecified',
          revokedAt: iso(NOW),
        })
        assert.deepEqual((await state(cfg)).revocations, [
          {id, serial: null, keyId: null, keyFingerprint: fp, reason: 'unspecified', revokedAt: NOW},
        ])
        assert.equal(await covered(cfg, expired), true)
        assert.equal(await covered(cfg, other), false)
      })

    it('--key as a certificate file: the certified key, not the CA key that signed it', async () => {
      const ca = generatePrivateKey('ed25519')
      const cert = await signCertificate(
        {
          publicKey: hostKey.publicKey,
          serial: 9n,
          type: 'host',
          keyId: 'web1',
          principals: ['web1'],
          validAfter: 0n,
          validBefore: 0xffff_ffff_ffff_ffffn,
          criticalOptions: {},
          extensions: {},
        },
        keySigner(ca.keyObject),
      )
      const f = join(tempDir(), 'host-cert.pub')
      writeFileSync(f, `${certificateLine(cert, 'web1')}\n`)
      assert.equal(await keyFingerprintArg(f, '--key'), hostKey.publicKey.fingerprint())
      // indented, after a comment: still read as the certificate it is
      const indented = join(tempDir(), 'indented-cert.pub')
      writeFileSync(indented, `# web1\n  ${certificateLine(cert, 'web1')}\n`)
      assert.equal(await keyFingerprintArg(indented, '--key'), hostKey.publicKey.fingerprint())
      assert.notEqual(hostKey.publicKey.fingerprint(), ca.publicKey.fingerprint())
    })

    it('--key that is not a fingerprint, a missing file or a file without a key is refused before anything is written', async () => {
      const cfg = freshCa()
      const dir = tempDir()
      const garbage = join(dir, 'garbage.pub')
      writeFileSync(garbage, 'ssh-ed25519 not-base64!\n')
      const empty = join(dir, 'empty.pub')
      writeFileSync(empty, '# only a comment\n\n')
      const cases: [string, string][] = [
        ['SHA256:short', 'ERR_USAGE'],
        [`SHA256:${'A'.repeat(44)}`, 'ERR_USAGE'],
        [`SHA256:${'A'.repeat(42)}!`, 'ERR_USAGE'],
        [join(dir, 'missing.pub'), 'ERR_FILE_NOT_FOUND'],
        [garbage, 'ERR_USAGE'],
        [empty, 'ERR_USAGE'],
      ]
      for (const [key, code] of cases) await rejectsCode(revoke({configPath: cfg, key, clock}), code)
      assert.deepEqual(await state(cfg), {revocations: [], events: []})
      // a well-formed fingerprint is taken as given
      const fp = `SHA256:${'A'.repeat(43)}`
      assert.equal(await keyFingerprintArg(fp, '--key'), fp)
    })

    it('exactly one of --serial, --key-id, --key, --subject: none or two are refused, nothing written', async () => {
      const cfg = freshCa()
      await seed(cfg, active({serial: 601n, subject: 'sub-x', keyId: 'kx'}))
      await rejectsCode(revoke({configPath: cfg, clock}), 'ERR_USAGE')
      await rejectsCode(revoke({configPath: cfg, serial: '601', subject: 'sub-x', clock}), 'ERR_USAGE')
      await rejectsCode(revoke({configPath: cfg, keyId: 'kx', key: keyFile, clock}), 'ERR_USAGE')
      await rejectsCode(
        revoke({configPath: cfg, serial: '601', keyId: 'kx', key: keyFile, subject: 'sub-x', clock}),
        'ERR_USAGE',
      )
      assert.deepEqual(await state(cfg), {revocations: [], events: []})
    })
  })

  describe('unrevoke and revocations', () => {
    it('lists every revocation, removes one by id (recording it), and refuses an unknown id', async () => {
      const cfg = freshCa()
      const c = active({serial: 701n, keyId: 'kid-701'})
      await seed(cfg, c)
      const bySerial = (await revoke({configPath: cfg, serial: '701', reason: 'one', clock})).revocations[0]!
      const byKeyId = (await revoke({configPath: cfg, keyId: 'kid-701', reason: 'two', clock: () => (NOW + 5) * 1000}))
        .revocations[0]!
      const fp = hostKey.publicKey.fingerprint()
      const byKey = (await revoke({configPath: cfg, key: fp, reason: 'three', clock})).revocations[0]!
      const listed = await revocations({configPath: cfg})
      assert.deepEqual(
        [...listed.revocations].sort((a, b) => a.reason.localeCompare(b.reason)),
        [
          {id: bySerial.id, serial: '701', keyId: null, keyFingerprint: null, reason: 'one', revokedAt: iso(NOW)},
          {id: byKey.id, serial: null, keyId: null, keyFingerprint: fp, reason: 'three', revokedAt: iso(NOW)},
          {
            id: byKeyId.id,
            serial: null,
            keyId: 'kid-701',
            keyFingerprint: null,
            reason: 'two',
            revokedAt: iso(NOW + 5),
          },
        ],
      )

      const later = () => (NOW + 100) * 1000
      const gone = await unrevoke({configPath: cfg, id: bySerial.id, clock: later})
      assert.deepEqual(gone, {...bySerial, descendants: []})
      assert.equal(await covered(cfg, {...c, keyId: 'other'}), false) // only the key-ID revocation covered it besides
      assert.equal(await covered(cfg, c), true)
      await unrevoke({configPath: cfg, id: byKeyId.id, clock: later})
      assert.equal(await covered(cfg, c), false)
      assert.deepEqual(
        (await revocations({configPath: cfg})).revocations.map((r) => r.id),
        [byKey.id],
      )
      const before = await state(cfg)
      assert.deepEqual(
        before.events.filter((e) => e.event === 'certificate_unrevoked'),
        [
          {event: 'certificate_unrevoked', at: NOW + 100, fields: {revocation: bySerial, descendants: []}},
          {event: 'certificate_unrevoked', at: NOW + 100, fields: {revocation: byKeyId, descendants: []}},
        ],
      )

      await rejectsCode(unrevoke({configPath: cfg, id: bySerial.id, clock: later}), 'ERR_NOT_FOUND')
      await rejectsCode(unrevoke({configPath: cfg, id: 'no-such-id', clock: later}), 'ERR_NOT_FOUND')
      assert.deepEqual(await state(cfg), before)
    })

    it('an empty store lists no revocations', async () => {
      assert.deepEqual(await revocations({configPath: freshCa()}), {revocations: []})
    })
  })

  describe('certs', () => {
    const FOREVER_ROW = 0x7fff_ffff_ffff_ffffn
    const recs = () => [
      active({
        serial: 801n,
        keyId: 'alice@laptop',
        subject: 'sub-alice',
        provisioner: 'sso',
        rule: 'engineers',
        principals: ['alice'],
        keyFingerprint: 'SHA256:alice',
        issuedAt: NOW - 300,
      }),
      active({
        serial: 802n,
        certType: 'host',
        keyId: 'host:web1',
        subject: 'web1',
        provisioner: 'host-enrollment',
        rule: null,
        principals: ['web1', 'web1.corp'],
        keyFingerprint: 'SHA256:web1',
        issuedAt: NOW - 200,
        validBefore: FOREVER_ROW,
      }),
      active({
        serial: 803n,
        keyId: 'alice@old',
        subject: 'sub-alice',
        provisioner: 'sso',
        keyFingerprint: 'SHA256:alice-old',
        issuedAt: NOW - 7200,
        validAfter: BigInt(NOW) - 7200n,
        validBefore: BigInt(NOW) - 3600n,
      }),
      active({
        serial: 804n,
        keyId: 'ci',
        subject: null,
        provisioner: 'github',
        rule: 'deploy',
        keyFingerprint: 'SHA256:ci',
        issuedAt: NOW - 100,
      }),
    ]

    it('lists every certificate newest first, each field as recorded, marking the revoked ones', async () => {
      const cfg = freshCa()
      await seed(cfg, ...recs())
      await revoke({configPath: cfg, serial: '803', clock})
      await revoke({configPath: cfg, keyId: 'ci', clock})
      const {certificates} = await certs({configPath: cfg, query: {}, clock})
      assert.deepEqual(certificates, [
        {
          serial: '804',
          certType: 'user',
          keyId: 'ci',
          principals: ['alice'],
          validAfter: iso(NOW - 3600),
          validBefore: iso(NOW + 3600),
          provisioner: 'github',
          rule: 'deploy',
          subject: null,
          keyFingerprint: 'SHA256:ci',
          issuedAt: iso(NOW - 100),
          revoked: true,
        },
        {
          serial: '802',
          certType: 'host',
          keyId: 'host:web1',
          principals: ['web1', 'web1.corp'],
          validAfter: iso(NOW - 3600),
          validBefore: 'forever',
          provisioner: 'host-enrollment',
          rule: null,
          subject: 'web1',
          keyFingerprint: 'SHA256:web1',
          issuedAt: iso(NOW - 200),
          revoked: false,
        },
        {
          serial: '801',
          certType: 'user',
          keyId: 'alice@laptop',
          principals: ['alice'],
          validAfter: iso(NOW - 3600),
          validBefore: iso(NOW + 3600),
          provisioner: 'sso',
          rule: 'engineers',
          subject: 'sub-alice',
          keyFingerprint: 'SHA256:alice',
          issuedAt: iso(NOW - 300),
          revoked: false,
        },
        {
          serial: '803',
          certType: 'user',
          keyId: 'alice@old',
          principals: ['alice'],
          validAfter: iso(NOW - 7200),
          validBefore: iso(NOW - 3600),
          provisioner: 'sso',
          rule: 'engineers',
          subject: 'sub-alice',
          keyFingerprint: 'SHA256:alice-old',
          issuedAt: iso(NOW - 7200),
          revoked: true,
        },
      ])
    })

    it('filters by subject, key ID, key, provisioner, type, since, limit and --active (valid at the clock)', async () => {
      const cfg = freshCa()
      await seed(cfg, ...recs())
      const serials = async (query: Parameters<typeof certs>[0]['query'], c = clock) =>
        (await certs({configPath: cfg, query, clock: c})).certificates.map((x) => x.serial)
      assert.deepEqual(await serials({subject: 'sub-alice'}), ['801', '803'])
      assert.deepEqual(await serials({keyId: 'alice@old'}), ['803'])
      assert.deepEqual(await serials({keyFingerprint: 'SHA256:web1'}), ['802'])
      assert.deepEqual(await serials({provisioner: 'sso'}), ['801', '803'])
      assert.deepEqual(await serials({certType: 'host'}), ['802'])
      assert.deepEqual(await serials({since: NOW - 200}), ['804', '802'])
      assert.deepEqual(await serials({limit: 2}), ['804', '802'])
      assert.deepEqual(await serials({active: true}), ['804', '802', '801'])
      assert.deepEqual(await serials({active: false}), ['804', '802', '801', '803'])
      assert.deepEqual(await serials({active: true, subject: 'sub-alice'}), ['801'])
      // --active is judged at the clock given: 5000 s earlier only 803 was valid
      assert.deepEqual(await serials({active: true}, () => (NOW - 5000) * 1000), ['803'])
      assert.deepEqual(await serials({subject: 'nobody'}), [])
    })
  })

  describe('hosts', () => {
    it('lists the newest certificate of each host key valid now, leaving out revoked, expired and user ones', async () => {
      const cfg = freshCa()
      const host = (over: Partial<IssuedRecord>) => active({certType: 'host', provisioner: 'host-enrollment', ...over})
      const web1 = host({
        serial: 901n,
        keyId: 'host:web1',
        principals: ['web1', 'web1.corp'],
        keyFingerprint: 'SHA256:w1',
        issuedAt: NOW - 50,
      })
      const db1 = host({
        serial: 902n,
        keyId: 'host:db1',
        principals: ['db1'],
        keyFingerprint: 'SHA256:d1',
        issuedAt: NOW - 40,
      })
      const gone = host({serial: 903n, keyId: 'host:old', keyFingerprint: 'SHA256:old', validBefore: BigInt(NOW)})
      const bySerial = host({serial: 904n, keyId: 'host:x', keyFingerprint: 'SHA256:x'})
      const byKeyId = host({serial: 905n, keyId: 'host:y', keyFingerprint: 'SHA256:y'})
      const byKey = host({serial: 906n, keyId: 'host:z', keyFingerprint: 'SHA256:z'})
      const user = active({serial: 907n})
      await seed(cfg, web1, db1, gone, bySerial, byKeyId, byKey, user)
      await withCaStore(cfg, async (s) => {
        await s.revoke({serial: 904n, keyId: null, keyFingerprint: null, reason: 'r', revokedAt: NOW})
        await s.revoke({serial: null, keyId: 'host:y', keyFingerprint: null, reason: 'r', revokedAt: NOW})
        await s.revoke({serial: null, keyId: null, keyFingerprint: 'SHA256:z', reason: 'r', revokedAt: NOW})
      })
      assert.deepEqual(await hosts({configPath: cfg, clock}), {
        hosts: [
          {
            principals: ['db1'],
            serial: '902',
            keyId: 'host:db1',
            validBefore: iso(NOW + 3600),
            keyFingerprint: 'SHA256:d1',
          },
          {
            principals: ['web1', 'web1.corp'],
            serial: '901',
            keyId: 'host:web1',
            validBefore: iso(NOW + 3600),
            keyFingerprint: 'SHA256:w1',
          },
        ],
      })
      // an hour and more later, none is valid
      assert.deepEqual(await hosts({configPath: cfg, clock: () => (NOW + 3600) * 1000}), {hosts: []})
    })
  })

  describe('a certificate valid forever (the store keeps it clamped to 2^63-1)', () => {
    it('ca hosts and ca revoke name it as valid forever instead of failing', async () => {
      const cfg = freshCa()
      const FOREVER = 0xffff_ffff_ffff_ffffn
      const host = active({
        serial: 1001n,
        certType: 'host',
        keyId: 'host:vault',
        principals: ['vault'],
        validBefore: FOREVER,
        keyFingerprint: 'SHA256:v',
      })
      const user = active({serial: 1002n, subject: 'sub-root', keyId: 'root@forever', validBefore: FOREVER})
      await seed(cfg, host, user)
      assert.deepEqual(await hosts({configPath: cfg, clock}), {
        hosts: [
          {
            principals: ['vault'],
            serial: '1001',
            keyId: 'host:vault',
            validBefore: 'forever',
            keyFingerprint: 'SHA256:v',
          },
        ],
      })
      const bySubject = await revoke({configPath: cfg, subject: 'sub-root', clock})
      assert.deepEqual(
        bySubject.certificates.map((c) => [c.serial, c.validBefore]),
        [['1002', 'forever']],
      )
      const bySerial = await revoke({configPath: cfg, serial: '1001', clock})
      assert.deepEqual(
        bySerial.certificates.map((c) => [c.serial, c.validBefore]),
        [['1001', 'forever']],
      )
      assert.equal(await covered(cfg, host), true)
      assert.equal(await covered(cfg, user), true)
      // both commands recorded (before, the revocation was written and the command failed before its event)
      assert.deepEqual(
        (await state(cfg)).events.map((e) => [e.event, e.fields.certificates]),
        [
          ['certificate_revoked', ['1002']],
          ['certificate_revoked', ['1001']],
        ],
      )
    })
  })

  describe('hostToken', () => {
    const verify = async (cfg: string, token: string, keyFingerprint: string, now = NOW) => {
      const {config} = await loadConfig(cfg)
      const p = caPaths(config.dir)
      const {readFile} = await import('node:fs/promises')
      return verifyEnrollmentToken(token, {
        enrollmentKey: await readSealedKey(p.enrollmentKey, PASSWORD),
        rootFingerprint: certFingerprint(pemToDer(await readFile(p.rootCert, 'utf8'))),
        now,
        keyFingerprint,
      })
    }

    it('mints a token the CA accepts, for the host and its extra principals, and records it (never the token)', async () => {
      const cfg = freshCa()
      const t = await hostToken({
        configPath: cfg,
        password: PASSWORD,
        hostname: 'web1.corp',
        principals: ['web1', '10.0.0.5'],
        ttlSeconds: 600,
        clock,
      })
      assert.equal(t.hostname, 'web1.corp')
      assert.deepEqual(t.principals, ['web1.corp', 'web1', '10.0.0.5'])
      assert.equal(t.expiresAt, NOW + 600)
      assert.equal(t.boundKey, null)
      const v = await verify(cfg, t.token, `SHA256:${'Q'.repeat(43)}`)
      assert.equal(v.subject, 'web1.corp')
      assert.equal(v.jti, t.jti)
      assert.equal(v.issuedAt, NOW)
      assert.deepEqual(v.principals, ['web1.corp', 'web1', '10.0.0.5'])
      assert.equal(v.boundKey, undefined)
      const st = await state(cfg)
      assert.deepEqual(st.events, [
        {
          event: 'enrollment_token_issued',
          at: NOW,
          fields: {
            jti: t.jti,
            hostname: 'web1.corp',
            principals: ['web1.corp', 'web1', '10.0.0.5'],
            bound_key: null,
            expires_at: iso(NOW + 600),
            token_sha256: tokenHash(t.token),
          },
        },
      ])
      assert.ok(!JSON.stringify(st.events).includes(t.token))
    })

    it('--key binds the token to that host key (given as a file or a fingerprint); the lifetime is capped', async () => {
      const cfg = freshCa()
      const fp = hostKey.publicKey.fingerprint()
      for (const key of [keyFile, fp]) {
        const t = await hostToken({
          configPath: cfg,
          password: PASSWORD,
          hostname: 'web2',
          key,
          ttlSeconds: 10 * 86_400,
          clock,
        })
        assert.equal(t.boundKey, fp)
        assert.deepEqual(t.principals, ['web2'])
        assert.equal(t.expiresAt, NOW + MAX_ENROLLMENT_TTL)
        assert.equal((await verify(cfg, t.token, fp)).boundKey, fp)
        await rejectsCode(verify(cfg, t.token, `SHA256:${'Q'.repeat(43)}`), 'ERR_POLICY_DENIED')
      }
      assert.deepEqual(
        (await state(cfg)).events.map((e) => e.fields.bound_key),
        [fp, fp],
      )
    })

    it('refuses a bad host name or principal, a bad key and a wrong password, recording nothing', async () => {
      const cfg = freshCa()
      const base = {configPath: cfg, password: PASSWORD, ttlSeconds: 600, clock}
      await rejectsCode(hostToken({...base, hostname: 'web 1'}), 'ERR_USAGE')
      await rejectsCode(hostToken({...base, hostname: 'web1', principals: ['ok', 'bad"one']}), 'ERR_USAGE')
      await rejectsCode(hostToken({...base, hostname: 'web1', key: 'SHA256:nope'}), 'ERR_USAGE')
      await rejectsCode(hostToken({...base, hostname: 'web1', key: join(tempDir(), 'none.pub')}), 'ERR_FILE_NOT_FOUND')
      await rejectsCode(hostToken({...base, password: 'wrong password!', hostname: 'web1'}), 'ERR_CA_PASSWORD')
      assert.deepEqual((await state(cfg)).events, [])
    })

    it('a CA whose sealed enrollment key cannot sign tokens fails as that, not as a usage error, recording nothing', async () => {
      const cfg = freshCa()
      const {config} = await loadConfig(cfg)
      const {privateKey} = generateKeyPairSync('ec', {namedCurve: 'P-256'})
      const path = caPaths(config.dir).enrollmentKey
      rmSync(path)
      await writeSealedKey(path, privateKey, PASSWORD)
      await assert.rejects(
        hostToken({configPath: cfg, password: PASSWORD, hostname: 'web1', ttlSeconds: 600, clock}),
        (err: {code?: unknown}) => err.code !== 'ERR_USAGE',
      )
      assert.deepEqual((await state(cfg)).events, [])
    })

    it('is refused while a restore is pending or within the leeway after the restore mark', async () => {
      const cfg = freshCa()
      const {config} = await loadConfig(cfg)
      const base = {configPath: cfg, password: PASSWORD, hostname: 'web1', ttlSeconds: 600}
      writeFileSync(caPaths(config.dir).restorePending, '{}')
      await rejectsCode(hostToken({...base, clock}), 'ERR_USAGE')
      rmSync(caPaths(config.dir).restorePending)
      await withCaStore(cfg, (s) => s.markRestored(NOW))
      await rejectsCode(hostToken({...base, clock: () => (NOW + 59) * 1000}), 'ERR_USAGE')
      assert.deepEqual((await state(cfg)).events, [])
      const t = await hostToken({...base, clock: () => (NOW + 60) * 1000})
      assert.equal(t.expiresAt, NOW + 660)
      assert.deepEqual(
        (await state(cfg)).events.map((e) => [e.event, e.at]),
        [['enrollment_token_issued', NOW + 60]],
      )
    })
  })

  describe('migrate', () => {
    it('brings an old database to this schema, then has nothing to apply', async () => {
      const cfg = freshCa()
      const {config} = await loadConfig(cfg)
      const path = join(config.dir, 'db', 'sshca.sqlite')
      assert.equal(existsSync(path), false)
      const db = new DatabaseSync(path)
      db.exec(`CREATE TABLE used_tokens (token_id TEXT PRIMARY KEY, expires_at BIGINT NOT NULL);
        CREATE TABLE certificates (serial TEXT PRIMARY KEY, cert_type TEXT NOT NULL, key_id TEXT NOT NULL, principals TEXT NOT NULL, valid_after BIGINT NOT NULL, valid_before BIGINT NOT NULL, provisioner TEXT NOT NULL, rule_name TEXT, subject TEXT, key_fingerprint TEXT NOT NULL, issued_at BIGINT NOT NULL, request_id TEXT NOT NULL, certificate TEXT NOT NULL);
        CREATE TABLE revocations (id TEXT PRIMARY KEY, serial TEXT, key_id TEXT, reason TEXT NOT NULL, revoked_at BIGINT NOT NULL);
        PRAGMA user_version = 1;`)
      db.close()
      assert.deepEqual(await migrate({configPath: cfg}), {
        config: config.path,
        backend: 'sqlite',
        from: 1,
        to: SCHEMA_VERSION,
        applied: SCHEMA_VERSION - 1,
      })
      assert.deepEqual(await migrate({configPath: cfg}), {
        config: config.path,
        backend: 'sqlite',
        from: SCHEMA_VERSION,
        to: SCHEMA_VERSION,
        applied: 0,
      })
    })
  })
})
