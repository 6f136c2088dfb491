/** Text renderers for the CA's admin commands. Pure: they return strings; the commands print them. */
import type {CertView, RevocationView, RevokeResult} from '../ca/admin.ts'
import {table} from './format.ts'

function target(r: RevocationView): string {
  if (r.serial !== null) return `serial ${r.serial}`
  if (r.keyFingerprint !== null) return `key ${r.keyFingerprint}`
  return `key ID "${r.keyId}"`
}

export function renderRevoke(r: RevokeResult, configPath: string): string {
  let out = ''
  if (r.kind === 'subject') {
    out += r.revocations.length === 0 ? 'No unexpired certificate of that subject: nothing revoked.\n' : `Revoked ${r.revocations.length} certificate(s) of that subject:\n`
    for (const c of r.certificates) out += `  serial ${c.serial}: ${c.certType} certificate "${c.keyId}" for ${c.principals.join(', ')}, valid until ${c.validBefore}\n`
  } else {
    const v = r.revocations[0]!
    out += `Revoked ${target(v)} (revocation ${v.id}).\n`
    if (r.kind === 'serial') {
      const c = r.certificates[0]
      out += c ? `  It is the ${c.certType} certificate "${c.keyId}" for ${c.principals.join(', ')}, valid until ${c.validBefore}.\n` : '  This CA has no record of issuing it; it is revoked anyway.\n'
    } else {
      out += `  ${r.certificates.length} unexpired certificate(s) carry it now.\n`
    }
  }
  if (r.blocksFutureCertificates) {
    out += `This also refuses every future certificate ${r.kind === 'key' ? 'of that key' : 'with that key ID'} (sign-ins, enrolments, renewals).\n`
    out += `Undo: sshca ca unrevoke ${r.revocations[0]!.id} --config ${configPath}\n`
  }
  out += 'Hosts pick this up at their next `sshca krl` (the sshca-krl timer runs hourly); now: run `sshca krl` on them.\n'
  out += 'Clients refresh their copy with `sshca config` or at their next `sshca login`.\n'
  return out
}

export function renderRevocations(list: RevocationView[]): string {
  if (list.length === 0) return 'No revocations.\n'
  return table([['ID', 'REVOKES', 'REASON', 'SINCE'], ...list.map((r) => [r.id, target(r), r.reason, r.revokedAt])])
}

export function renderCerts(list: CertView[]): string {
  if (list.length === 0) return 'No certificate matches.\n'
  return table([
    ['SERIAL', 'TYPE', 'KEY ID', 'PRINCIPALS', 'VALID UNTIL', 'PROVISIONER/RULE', 'SUBJECT', 'REVOKED'],
    ...list.map((c) => [c.serial, c.certType, c.keyId, c.principals.join(','), c.validBefore, `${c.provisioner}/${c.rule ?? '-'}`, c.subject ?? '-', c.revoked ? 'yes' : 'no']),
  ])
}
