/**
 * ssh-keygen as the oracle for src/ssh: every certificate shape we build is read back by
 * `ssh-keygen -L` with the same fields; every certificate `ssh-keygen -s` makes parses to the same
 * fields, renders exactly as `ssh-keygen -L` prints it, and verifies; key files cross both ways.
 */
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {validityText} from '../../src/cli/format.ts'
import {renderInspect} from '../../src/cli/render.ts'
import {inspectCertificate} from '../../src/client/local/inspect.ts'
import {
  FOREVER,
  certificateLine,
  parseCertificateLine,
  signCertificate,
  verifyCertificate,
  type CertOptions,
  type CertType,
} from '../../src/ssh/cert.ts'
import {buildKrl} from '../../src/ssh/krl.ts'
import {PublicKey} from '../../src/ssh/keys.ts'
import {
  formatOpenSshPrivateKey,
  generatePrivateKey,
  parsePrivateKeyFile,
  type KeyKind,
  type PrivateKey,
} from '../../src/ssh/private-key.ts'
import {keySigner} from '../../src/ssh/signature.ts'
import {keygenShow, parseKeygenShow} from '../helpers/openssh.ts'
import {run, runOk} from '../helpers/proc.ts'
import {forgeCertificate, packStrings, rawOptions, type ForgedFields} from '../helpers/forge.ts'
import {tempDir} from '../helpers/tmp.ts'

const KINDS: KeyKind[] = ['ed25519', 'ecdsa', 'ecdsa-p384', 'ecdsa-p521', 'rsa']
const KEYGEN_ARGS: Record<KeyKind, string[]> = {
  ed25519: ['-t', 'ed25519'],
  ecdsa: ['-t', 'ecdsa', '-b', '256'],
  'ecdsa-p384': ['-t', 'ecdsa', '-b', '384'],
  'ecdsa-p521': ['-t', 'ecdsa', '-b', '521'],
  rsa: ['-t', 'rsa', '-b', '2048'],
}
const LABEL: Record<string, string> = {'ssh-ed25519': 'ED25519', 'ssh-rsa': 'RSA'}
const label = (k: PublicKey): string => LABEL[k.type] ?? 'ECDSA'

interface OptionSet {
  name: string
  critical: CertOptions
  extensions: CertOptions
  criticalLines: string[]
  extensionLines: string[]
}

const OPTION_SETS: OptionSet[] = [
  {name: 'no options', critical: {}, extensions: {}, criticalLines: [], extensionLines: []},
  {
    name: 'restricted',
    critical: {
      'verify-required': true,
      'source-address': '10.0.0.0/8,192.168.1.1/32',
      'force-command': '/usr/local/bin/deploy.sh --prod',
    },
    extensions: {
      'permit-pty': true,
      'permit-X11-forwarding': true,
      'permit-agent-forwarding': true,
      'permit-port-forwarding': true,
      'permit-user-rc': true,
      'no-touch-required': true,
    },
    criticalLines: [
      'force-command /usr/local/bin/deploy.sh --prod',
      'source-address 10.0.0.0/8,192.168.1.1/32',
      'verify-required',
    ],
    extensionLines: [
      'no-touch-required',
      'permit-X11-forwarding',
      'permit-agent-forwarding',
      'permit-port-forwarding',
      'permit-pty',
      'permit-user-rc',
    ],
  },
  {
    name: 'unknown options',
    critical: {'x@example.com': Buffer.from('0000000376616c', 'hex')},
    extensions: {'y@example.com': true, 'z@example.com': Buffer.from('0000000161', 'hex')},
    criticalLines: ['x@example.com UNKNOWN OPTION: 0000000376616c (len 7)'],
    extensionLines: ['y@example.com UNKNOWN FLAG OPTION', 'z@example.com UNKNOWN OPTION: 0000000161 (len 5)'],
  },
]

describe('src/ssh against ssh-keygen', function () {
  this.timeout(120_000)
  let dir: string
  const keys = new Map<KeyKind, PrivateKey>()

  before(() => {
    dir = tempDir()
    process.env.TZ = 'UTC'
    for (const kind of KINDS) keys.set(kind, generatePrivateKey(kind, 3072))
  })

  describe('every certificate shape we build is read back by ssh-keygen -L with the same fields', () => {
    for (const caKind of KINDS) {
      for (const certType of ['user', 'host'] as CertType[]) {
        it(`CA ${caKind}, ${certType} certificates: all subject key types × option sets`, async () => {
          const ca = keys.get(caKind)!
          let n = 0
          for (const subjectKind of KINDS) {
            for (const opts of OPTION_SETS) {
              const subject = keys.get(subjectKind)!
              const forever = n++ % 4 === 0
              const cert = await signCertificate(
                {
                  type: certType,
                  publicKey: subject.publicKey,
                  serial: BigInt(n) * 1_000_000_007n,
                  keyId: `id ${caKind}/${subjectKind}/${opts.name}`,
                  principals: certType === 'user' ? ['alice', 'deploy'] : ['web1.example.com', '10.1.2.3'],
                  validAfter: forever ? 0n : 1_767_225_600n,
                  validBefore: forever ? FOREVER : 1_767_254_400n,
                  criticalOptions: opts.critical,
                  extensions: opts.extensions,
                },
                keySigner(ca.keyObject),
              )
              const file = join(dir, `c-${caKind}-${certType}-${subjectKind}-${n}-cert.pub`)
              writeFileSync(file, certificateLine(cert) + '\n')
              const keygen = await run('ssh-keygen', ['-L', '-f', file], {env: {...process.env, TZ: 'UTC'}})
              assert.equal(keygen.code, 0, keygen.stderr)
              const shown = parseKeygenShow(keygen.stdout)
              // and sshca inspect prints it as ssh-keygen -L does, every known option by its name
              const {result} = inspectCertificate(certificateLine(cert))
              assert.equal(
                renderInspect(file, result, validityText(cert.validAfter, cert.validBefore)),
                keygen.stdout + '        Signature: valid\n',
              )
              assert.deepEqual(shown, {
                type: `${subject.publicKey.type}-cert-v01@openssh.com`,
                certType,
                publicKey: `${label(subject.publicKey)}-CERT ${subject.publicKey.fingerprint()}`,
                signingCa: `${label(ca.publicKey)} ${ca.publicKey.fingerprint()}`,
                signingAlgorithm: ca.publicKey.type === 'ssh-rsa' ? 'rsa-sha2-512' : ca.publicKey.type,
                keyId: `id ${caKind}/${subjectKind}/${opts.name}`,
                serial: String(BigInt(n) * 1_000_000_007n),
                valid: forever ? 'forever' : 'from 2026-01-01T00:00:00 to 2026-01-01T08:00:00',
                principals: certType === 'user' ? ['alice', 'deploy'] : ['web1.example.com', '10.1.2.3'],
                criticalOptions: opts.criticalLines,
                extensions: opts.extensionLines,
              })
            }
          }
        })
      }
    }
  })

  describe('certificates made by ssh-keygen -s parse to the same fields, render identically and verify', () => {
    const cases: {ca: KeyKind; subject: KeyKind; extra: string[]}[] = []
    for (const ca of KINDS) for (const subject of KINDS) cases.push({ca, subject, extra: []})
    cases.push({ca: 'rsa', subject: 'ed25519', extra: ['-t', 'rsa-sha2-256']})

    let i = 0
    for (const c of cases) {
      it(`CA ${c.ca}${c.extra.length ? ` (${c.extra[1]})` : ''} signs ${c.subject}`, async () => {
        const n = i++
        const caFile = join(dir, `kg-ca-${n}`)
        const subjectFile = join(dir, `kg-subject-${n}`)
        await runOk('ssh-keygen', ['-q', ...KEYGEN_ARGS[c.ca], '-N', '', '-f', caFile])
        await runOk('ssh-keygen', ['-q', ...KEYGEN_ARGS[c.subject], '-N', '', '-f', subjectFile])
        const host = n % 2 === 1
        await runOk('ssh-keygen', [
          '-q',
          '-s',
          caFile,
          ...c.extra,
          '-I',
          `kid-${n}`,
          '-z',
          String(n * 31 + 7),
          '-V',
          '20260101000000:20260102000000',
          '-n',
          host ? 'h1.example.com,h2' : 'alice,bob',
          ...(host
            ? ['-h']
            : [
                '-O',
                'force-command=/bin/echo forced',
                '-O',
                'source-address=127.0.0.1/32',
                '-O',
                'verify-required',
                '-O',
                'no-pty',
                '-O',
                'extension:custom@example.com=v',
                '-O',
                'critical:crit@example.com',
              ]),
          `${subjectFile}.pub`,
        ])
        const line = readFileSync(`${subjectFile}-cert.pub`, 'utf8')
        const {cert} = parseCertificateLine(line)
        const check = verifyCertificate(cert)
        assert.equal(check.valid, true, check.reason)
        assert.equal(cert.keyId, `kid-${n}`)
        assert.equal(cert.serial, BigInt(n * 31 + 7))
        assert.equal(cert.type, host ? 'host' : 'user')
        assert.ok(cert.signatureKey.equals(PublicKey.parseLine(readFileSync(`${caFile}.pub`, 'utf8')).key))
        assert.ok(cert.publicKey.equals(PublicKey.parseLine(readFileSync(`${subjectFile}.pub`, 'utf8')).key))
        if (!host) {
          assert.deepEqual(cert.principals, ['alice', 'bob'])
          assert.equal(cert.criticalOptions['force-command'], '/bin/echo forced')
          assert.equal(cert.criticalOptions['source-address'], '127.0.0.1/32')
          assert.equal(cert.criticalOptions['verify-required'], true)
          assert.equal(cert.extensions['permit-pty'], undefined)
          assert.equal(cert.extensions['permit-agent-forwarding'], true)
        }
        // our rendering is ssh-keygen -L's, line for line, plus the signature line
        const keygen = await run('ssh-keygen', ['-L', '-f', `${subjectFile}-cert.pub`], {
          env: {...process.env, TZ: 'UTC'},
        })
        const {result} = inspectCertificate(line)
        const ours = renderInspect(`${subjectFile}-cert.pub`, result, validityText(cert.validAfter, cert.validBefore))
        assert.equal(ours, keygen.stdout + '        Signature: valid\n')
        assert.deepEqual(parseKeygenShow(ours.split('\n').slice(0, -2).join('\n')), parseKeygenShow(keygen.stdout))
      })
    }
  })

  describe('key files and fingerprints', () => {
    for (const kind of KINDS) {
      it(`${kind}: ssh-keygen reads our private key file; we read its; fingerprints agree`, async () => {
        const k = keys.get(kind)!
        const ours = join(dir, `ours-${kind}`)
        writeFileSync(ours, formatOpenSshPrivateKey(k, 'ours'), {mode: 0o600})
        const y = await runOk('ssh-keygen', ['-y', '-f', ours])
        assert.ok(PublicKey.parseLine(y.stdout).key.equals(k.publicKey))

        const theirs = join(dir, `theirs-${kind}`)
        await runOk('ssh-keygen', ['-q', ...KEYGEN_ARGS[kind], '-N', '', '-C', 'theirs', '-f', theirs])
        const {key, comment} = parsePrivateKeyFile(readFileSync(theirs, 'utf8'))
        const pub = PublicKey.parseLine(readFileSync(`${theirs}.pub`, 'utf8')).key
        assert.ok(key.publicKey.equals(pub))
        assert.equal(comment, 'theirs')
        const l = await runOk('ssh-keygen', ['-l', '-f', `${theirs}.pub`])
        assert.equal(l.stdout.split(' ')[1], pub.fingerprint())
        assert.equal(l.stdout.split(' ')[0], String(pub.bits))
      })
    }
  })

  describe('certificates OpenSSH refuses, we refuse: one certificate must not mean two things', () => {
    // built inside the test, not here: this describe() body runs once, when the file loads
    const hostile: [string, () => Partial<ForgedFields>][] = [
      ['type code 3', () => ({typeCode: 3})],
      ['type code 0', () => ({typeCode: 0})],
      ['a NUL byte in a principal', () => ({principals: ['alice', 'root\0alice']})],
      ['a NUL byte in the key ID', () => ({keyId: 'alice\0@example.com'})],
      [
        'a NUL byte in an option name',
        () => ({criticalOptions: rawOptions(['force-command\0x', packStrings(['/bin/true'])])}),
      ],
      [
        'a NUL byte in a force-command',
        () => ({criticalOptions: rawOptions(['force-command', packStrings(['/bin/true\0; sh'])])}),
      ],
      [
        'a NUL byte in a source-address',
        () => ({criticalOptions: rawOptions(['source-address', packStrings(['10.0.0.1\0,0.0.0.0/0'])])}),
      ],
      ['a force-command with no value', () => ({criticalOptions: rawOptions(['force-command', Buffer.alloc(0)])})],
      [
        'bytes after a force-command',
        () => ({
          criticalOptions: rawOptions(['force-command', Buffer.concat([packStrings(['/bin/true']), Buffer.of(0)])]),
        }),
      ],
    ]
    for (const [what, fields] of hostile) {
      it(what, async () => {
        const ca = keys.get('ed25519')!
        const file = join(dir, `hostile-${what.replace(/\W+/g, '-')}-cert.pub`)
        const line = certificateLine({
          keyType: 'ssh-ed25519-cert-v01@openssh.com',
          blob: forgeCertificate(ca, ca.publicKey, fields()),
        })
        writeFileSync(file, `${line}\n`)
        const keygen = await run('ssh-keygen', ['-L', '-f', file])
        // ssh-keygen -L refuses to load it, or stops when it reaches the options
        assert.notEqual(keygen.code, 0, `ssh-keygen accepted it:\n${keygen.stdout}`)
        assert.throws(
          () => parseCertificateLine(line),
          (err: {code?: string}) => err.code === 'ERR_SSH_FORMAT' || err.code === 'ERR_SSH_UNSUPPORTED',
        )
      })
    }
    it('and the same certificate with clean fields is read by both', async () => {
      const ca = keys.get('ed25519')!
      const file = join(dir, 'clean-cert.pub')
      const line = certificateLine({
        keyType: 'ssh-ed25519-cert-v01@openssh.com',
        blob: forgeCertificate(ca, ca.publicKey, {
          principals: ['alice'],
          keyId: 'alice@example.com',
          criticalOptions: rawOptions(['force-command', packStrings(['/bin/true'])]),
        }),
      })
      writeFileSync(file, `${line}\n`)
      const shown = await keygenShow(file)
      assert.equal(shown.keyId, 'alice@example.com')
      assert.equal(parseCertificateLine(line).cert.criticalOptions['force-command'], '/bin/true')
    })
  })

  describe('KRLs: ssh-keygen -Q reads what buildKrl writes', () => {
    it('revoked serials, key IDs and keys (by SHA-256) are REVOKED, under the right CA key only; the rest is ok', async () => {
      const dir = tempDir('sshca-krl-oracle-')
      const ca = generatePrivateKey('ed25519')
      const otherCa = generatePrivateKey('ecdsa')
      const now = BigInt(Math.floor(Date.now() / 1000))
      const cert = async (
        name: string,
        serial: bigint,
        keyId: string,
        by = ca,
        key = generatePrivateKey('ed25519'),
      ) => {
        const c = await signCertificate(
          {
            type: 'host',
            publicKey: key.publicKey,
            serial,
            keyId,
            principals: [name],
            validAfter: now - 60n,
            validBefore: now + 3600n,
          },
          keySigner(by.keyObject),
        )
        const f = join(dir, `${name}-cert.pub`)
        writeFileSync(f, `${certificateLine(c, name)}\n`)
        return f
      }
      const revokedKey = generatePrivateKey('ed25519')
      const files = {
        bySerial: await cert('by-serial', 5n, 'host:a'),
        bigSerial: await cert('big-serial', 2n ** 63n + 1n, 'host:big'),
        byKeyId: await cert('by-key-id', 6n, 'host:gone'),
        byKey: await cert('by-key', 7n, 'host:b', ca, revokedKey),
        fine: await cert('fine', 8n, 'host:c'),
        otherCaSameSerial: await cert('other-ca', 5n, 'host:gone', otherCa),
      }
      const krl = join(dir, 'krl')
      writeFileSync(
        krl,
        buildKrl({
          version: 1n,
          generatedAt: now,
          comment: 'oracle',
          sections: [{caKey: ca.publicKey, serials: [5n, 2n ** 63n + 1n], keyIds: ['host:gone']}],
          revokedKeySha256: [createHash('sha256').update(revokedKey.publicKey.blob).digest()],
        }),
      )
      const verdict = async (f: string) =>
        (await run('ssh-keygen', ['-Q', '-f', krl, f])).stdout.trim().split(': ').pop()
      assert.deepEqual(
        {
          bySerial: await verdict(files.bySerial),
          bigSerial: await verdict(files.bigSerial),
          byKeyId: await verdict(files.byKeyId),
          byKey: await verdict(files.byKey),
          fine: await verdict(files.fine),
          otherCaSameSerial: await verdict(files.otherCaSameSerial),
        },
        {
          bySerial: 'REVOKED',
          bigSerial: 'REVOKED',
          byKeyId: 'REVOKED',
          byKey: 'REVOKED',
          fine: 'ok',
          otherCaSameSerial: 'ok',
        },
      )
      // a KRL that revokes nothing leaves every certificate ok
      writeFileSync(
        krl,
        buildKrl({
          version: 2n,
          generatedAt: now,
          comment: '',
          sections: [{caKey: ca.publicKey, serials: [], keyIds: []}],
        }),
      )
      assert.equal(await verdict(files.bySerial), 'ok')
    })
  })
})
