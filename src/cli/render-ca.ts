/** Text renderers for the CA's admin commands. Pure: they return strings; the commands print them. */
import type {CertView, RevocationView, RevokeResult} from '../ca/admin.ts'
import type {RotateResult, RotateStep} from '../ca/rotate.ts'
import type {WhatIfReport} from '../ca/authority/whatif.ts'
import {table} from './format.ts'

function target(r: RevocationView): string {
  if (r.serial !== null) return `serial ${r.serial}`
  if (r.keyFingerprint !== null) return `key ${r.keyFingerprint}`
  return `key ID "${r.keyId}"`
}

export function renderRevoke(r: RevokeResult, configPath: string): string {
  let out = ''
  if (r.kind === 'subject') {
    out +=
      r.revocations.length === 0
        ? 'No unexpired certificate of that subject: nothing revoked.\n'
        : `Revoked ${r.revocations.length} certificate(s) of that subject:\n`
    for (const c of r.certificates)
      out += `  serial ${c.serial}: ${c.certType} certificate "${c.keyId}" for ${c.principals.join(', ')}, valid until ${c.validBefore}\n`
  } else {
    const v = r.revocations[0]!
    out += `Revoked ${target(v)} (revocation ${v.id}).\n`
    if (r.kind === 'serial') {
      const c = r.certificates[0]
      out += c
        ? `  It is the ${c.certType} certificate "${c.keyId}" for ${c.principals.join(', ')}, valid until ${c.validBefore}.\n`
        : '  This CA has no record of issuing it; it is revoked anyway.\n'
    } else {
      out += `  ${r.certificates.length} unexpired certificate(s) carry it now.\n`
    }
  }
  // what a host renewed (another serial) or rekeyed (another key) to: the store revoked it too
  if (r.descendants.length > 0)
    out += `Also revoked: the ${r.descendants.length} certificate(s) renewed or rekeyed from ${r.kind === 'serial' ? 'it' : 'them'}, serial ${r.descendants.join(', ')}.\n`
  if (r.blocksFutureCertificates) {
    out += `This also refuses every future certificate ${r.kind === 'key' ? 'of that key' : 'with that key ID'} (sign-ins, enrolments, renewals).\n`
  }
  if (r.kind !== 'subject' && (r.blocksFutureCertificates || r.descendants.length > 0))
    out += `Undo${r.descendants.length > 0 ? ' (with those it renewed or rekeyed to)' : ''}: sshca ca unrevoke ${r.revocations[0]!.id} --config ${configPath}\n`
  // issued before the store recorded parents: what it renewed or rekeyed to before then is not followed
  for (const id of r.hostKeyIds)
    out += `Issued before this CA recorded what each host certificate was renewed or rekeyed from: a certificate renewed or rekeyed from it before that upgrade is not covered and may still work. To end them all: sshca ca revoke --key-id ${JSON.stringify(id)} --config ${configPath}\n`
  out +=
    'Hosts pick this up at their next `sshca krl` (the sshca-krl timer runs hourly); now: run `sshca krl` on them.\n'
  out += 'Clients refresh their copy with `sshca config` or at their next `sshca login`.\n'
  return out
}

export function renderRevocations(list: RevocationView[]): string {
  if (list.length === 0) return 'No revocations.\n'
  return table([
    ['ID', 'REVOKES', 'REASON', 'SINCE'],
    ...list.map((r) => [
      r.id,
      r.cascadeOf === undefined ? target(r) : `${target(r)} (descends from what ${r.cascadeOf} revokes)`,
      r.reason,
      r.revokedAt,
    ]),
  ])
}

export function renderCerts(list: CertView[]): string {
  if (list.length === 0) return 'No certificate matches.\n'
  return table([
    ['SERIAL', 'TYPE', 'KEY ID', 'PRINCIPALS', 'VALID UNTIL', 'PROVISIONER/RULE', 'SUBJECT', 'REVOKED'],
    ...list.map((c) => [
      c.serial,
      c.certType,
      c.keyId,
      c.principals.join(','),
      c.validBefore,
      `${c.provisioner}/${c.rule ?? '-'}`,
      c.subject ?? '-',
      c.revoked ? 'yes' : 'no',
    ]),
  ])
}

export function renderRotation(r: RotateResult): string {
  const done: Record<RotateStep, string> = {
    status: '',
    prepare: 'Prepared (published, not signing yet): clients and hosts start trusting it at their next refresh.',
    activate: 'Activated (signs from now on); the previous key stays published until you retire it.',
    retire: 'Retired (no longer published): clients and hosts drop it at their next refresh.',
  }
  let out = ''
  if (r.changed.length)
    out += `${done[r.step]}\n${r.changed.map((c) => `  ${c.kind} CA: ${c.key} ${c.fingerprint}`).join('\n')}\n`
  for (const s of r.stranded)
    out += `warning: --force: ${s.certificates} ${s.kind} certificate(s) of the retired key still valid until ${s.lastExpiry ?? '?'} now stop working\n`
  for (const d of r.destroyed)
    out += d.destroyed
      ? `  ${d.kind} CA ${d.key}: its private key is destroyed (${d.store === 'file' ? 'sealed file removed' : 'token objects destroyed'}); earlier backups still hold it\n`
      : `warning: ${d.kind} CA ${d.key}: its private key could not be destroyed (${d.error}); run sshca ca rotate retire --kind ${d.kind} again once that is mended, or remove it yourself\n`
  out += `\nX.509 roots (what clients pin):\n${table([['FINGERPRINT', 'STATE', 'SUBJECT', 'NOT AFTER'], ...r.roots.map((x) => [x.fingerprint, x.state, x.subject, x.notAfter])])}`
  for (const kind of ['user', 'host'] as const) {
    out += `\n${kind} CA keys:\n`
    out += table([
      ['ID', 'STATE', 'FINGERPRINT', 'STORE', 'CREATED', 'ACTIVATED', 'DEACTIVATED', 'RETIRED'],
      ...r.keys[kind].map((k) => [
        k.id,
        k.state,
        k.fingerprint,
        k.store,
        k.createdAt,
        k.activatedAt ?? '-',
        k.deactivatedAt ?? '-',
        k.retiredAt ?? '-',
      ]),
    ])
  }
  return out
}

export function renderWhatIf(r: WhatIfReport, skipped: number): string {
  const s = r.summary
  let out = `Replayed ${r.replayed} recorded request(s) (${r.distinct} distinct) through ${r.config}${skipped ? `; ${skipped} could not be replayed (no claims recorded)` : ''}:\n`
  out += `  ${s.unchanged} unchanged, ${s.changed} changed, ${s.newly_denied} newly DENIED, ${s.newly_allowed} newly allowed, ${s.still_denied} still denied\n`
  const list = (label: string, xs: string[]) => (xs.length ? `      ${label} ${xs.join(', ')}\n` : '')
  for (const c of r.changes) {
    out += `\n  ${c.kind === 'newly_denied' ? 'DENIED ' : c.kind === 'newly_allowed' ? 'ALLOWED' : 'CHANGED'} ${c.subject ?? '(no subject)'} via ${c.provisioner} (${c.requests} request(s), last ${c.at})\n`
    if (!c.after.issued) out += `      would be denied: ${c.after.reason}: ${c.after.message}\n`
    else out += `      rule ${c.before.issued ? `${c.before.rule ?? '?'} → ` : ''}${c.after.rule}\n`
    out += list('+ principals', c.gained.principals) + list('- principals', c.lost.principals)
    out += list('+ extensions', c.gained.extensions) + list('- extensions', c.lost.extensions)
    out += list('+ options   ', c.gained.criticalOptions) + list('- options   ', c.lost.criticalOptions)
    if (c.ttlChange !== 0 && c.before.issued && c.after.issued)
      out += `      lifetime ${c.before.ttl} → ${c.after.ttl}\n`
  }
  return out
}
