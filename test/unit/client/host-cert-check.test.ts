/**
 * What `sshca certificate --host`, `renew` and `rekey` install (checkHostCert): a certificate from a
 * pinned host CA key, for this key, naming a host, valid now, and — when it replaces one — not ending
 * before it unless it outlives the next daily renewal. The attacks are a CA that misbehaves (a wrong
 * clock, a bug, or a compromise): each certificate here is one such a CA could return.
 */
import assert from 'node:assert/strict'
import {checkHostCert, HOST_CERT_MIN_LEFT, supersededRefusal} from '../../../src/client/host/host.ts'
import {SshcaError} from '../../../src/errors.ts'
import {SUPERSEDED_MESSAGE} from '../../../src/protocol/api.ts'
import type {Context} from '../../../src/client/home/home.ts'
import {parseCertificate, signCertificate, type Certificate} from '../../../src/ssh/cert.ts'
import {generatePrivateKey, type PrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {throwsCode} from '../../helpers/assert.ts'
import {forgeCertificate} from '../../helpers/forge.ts'

const ca = generatePrivateKey('ed25519')
const host = generatePrivateKey('ed25519')
const now = 1_800_000_000n
const ctx = (hostCaKeys: string[]): Context => ({name: 'prod', hostCaKeys}) as unknown as Context
const pinned = ctx([ca.publicKey.toLine('host CA')])

/** A certificate ending at `validBefore`; it starts a minute back (a CA whose clock agrees) unless `validAfter` says otherwise. */
const cert = (validBefore: bigint, o: {signer?: PrivateKey; validAfter?: bigint} = {}): Promise<Certificate> =>
  signCertificate(
    {
      type: 'host',
      publicKey: host.publicKey,
      serial: 7n,
      keyId: 'web1',
      principals: ['web1.example.com'],
      validAfter: o.validAfter ?? now - 60n,
      validBefore,
    },
    keySigner((o.signer ?? ca).keyObject),
  )

describe('checkHostCert: what a host installs from its CA', () => {
  it('a good certificate, enrolled or renewed: installed', async () => {
    const current = await cert(now + 8n * 3600n)
    checkHostCert(await cert(now + 30n * 86400n), pinned, host.publicKey, now)
    checkHostCert(await cert(now + 30n * 86400n), pinned, host.publicKey, now, current)
  })

  it('a context that trusts no host CA key (its CA published none): every certificate refused, even a good one', async () => {
    const good = await cert(now + 30n * 86400n)
    const other = await cert(now + 30n * 86400n, {signer: generatePrivateKey('ed25519')})
    for (const c of [good, other])
      throwsCode(
        () => checkHostCert(c, ctx([]), host.publicKey, now),
        'ERR_CA_BAD_RESPONSE',
        {},
        /the CA of context prod publishes no host CA key, so no certificate it returns can be checked/,
      )
  })

  it('signed by a key the context does not pin: refused', async () => {
    const other = await cert(now + 30n * 86400n, {signer: generatePrivateKey('ed25519')})
    throwsCode(() => checkHostCert(other, pinned, host.publicKey, now), 'ERR_CA_BAD_RESPONSE')
  })

  it('naming no host (OpenSSH takes such a certificate for every host name): refused', () => {
    // sshca's own signCertificate makes none such (SECURITY.md row 66): a CA that misbehaves does
    const any = parseCertificate(
      forgeCertificate(ca, host.publicKey, {
        typeCode: 2,
        principals: [],
        validAfter: now - 60n,
        validBefore: now + 86400n,
      }),
    )
    throwsCode(
      () => checkHostCert(any, pinned, host.publicKey, now),
      'ERR_CA_BAD_RESPONSE',
      {},
      /it names no host \(sshd and ssh would take it for any\)/,
    )
  })

  it('a renewal from a CA whose clock runs behind, ending before the certificate it replaces and before the next daily run: refused, the old one kept', async () => {
    const current = await cert(now + 8n * 3600n)
    // the CA's clock a 30-day validity (less five seconds) behind: five seconds left, where the old one had eight hours
    const behind = (validBefore: bigint) => cert(validBefore, {validAfter: validBefore - 30n * 86400n})
    const short = await behind(now + 5n)
    throwsCode(
      () => checkHostCert(short, pinned, host.publicKey, now, current),
      'ERR_CA_BAD_RESPONSE',
      {},
      /it ends at 2027-01-15T08:00:05.000Z, before the certificate it would replace \(2027-01-15T16:00:00.000Z\) and before the next daily renewal could renew it/,
    )
    // the same certificate as an enrollment (nothing to replace) is the CA's to give
    checkHostCert(short, pinned, host.publicKey, now)
    // right at the horizon: it outlives the next run by a hair, so it is installed
    const longCurrent = await cert(now + 30n * 86400n)
    checkHostCert(await behind(now + HOST_CERT_MIN_LEFT), pinned, host.publicKey, now, longCurrent)
    const justShort = await behind(now + HOST_CERT_MIN_LEFT - 1n)
    throwsCode(() => checkHostCert(justShort, pinned, host.publicKey, now, longCurrent), 'ERR_CA_BAD_RESPONSE')
    // a start six minutes back is a clock within the skew and the CA's minute of leeway: not behind
    const sixMinutes = await cert(now + 3600n, {validAfter: now - 360n})
    checkHostCert(sixMinutes, pinned, host.publicKey, now, longCurrent)
    const sevenMinutes = await cert(now + 3600n, {validAfter: now - 361n})
    throwsCode(() => checkHostCert(sevenMinutes, pinned, host.publicKey, now, longCurrent), 'ERR_CA_BAD_RESPONSE')
  })

  it('a renewal ending sooner from a CA whose clock agrees (its TTL lowered to 12 h, renewals hourly; a key rotated out early): installed', async () => {
    const current = await cert(now + 10n * 86400n)
    checkHostCert(await cert(now + 12n * 3600n), pinned, host.publicKey, now, current)
    checkHostCert(await cert(now + 7n * 86400n), pinned, host.publicKey, now, current)
  })
})

describe('supersededRefusal: the commands it suggests are safe to paste as root', () => {
  it('names and the key file are quoted unless plainly a name or a path', () => {
    const refusal = new SshcaError('ERR_CA_DENIED', 'denied', {details: {caMessage: `${SUPERSEDED_MESSAGE}: …`}})
    const weird = parseCertificate(
      forgeCertificate(ca, host.publicKey, {
        typeCode: 2,
        principals: ['web1.example.com', "x;touch /tmp/p'wned", '10.0.0.7'],
        validAfter: now - 60n,
        validBefore: now + 86400n,
      }),
    )
    const err = supersededRefusal(refusal, 'renew', '/etc/ssh/k-cert.pub', weird, '/etc/ssh/my key.pub')
    assert.equal(
      err?.hint,
      "enrol this host again. On the CA: sshca ca token --host web1.example.com --principal 'x;touch /tmp/p'\\''wned' --principal 10.0.0.7 --key '/etc/ssh/my key.pub' (with the CA's --config and --password-file); then here: sshca certificate --host --sign --token-file FILE web1.example.com '/etc/ssh/my key.pub' --principal 'x;touch /tmp/p'\\''wned' --principal 10.0.0.7",
    )
    assert.equal(supersededRefusal(new SshcaError('ERR_CA_DENIED', 'other'), 'renew', 'f', weird, 'k'), undefined)
  })
})
