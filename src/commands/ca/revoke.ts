import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag} from '../../cli/flags.ts'
import {renderRevoke} from '../../cli/render-ca.ts'

const ONE = ['serial', 'key-id', 'key', 'subject']

export default class CaRevoke extends BaseCommand {
  static override summary =
    'Revoke a certificate, a key ID, a key, or every current certificate of one identity (on the CA box).'
  static override description = `Records the revocation in the CA's store; the running CA writes it to its audit log. GET /ssh/krl
serves it in the KRL that hosts fetch with \`sshca krl\` (sshd's RevokedKeys) and clients with
\`sshca config\` (ssh's RevokedHostKeys).

--serial revokes one certificate. --subject revokes every unexpired certificate of one identity (the
token's "sub"), serial by serial. --key-id and --key revoke every certificate with that key ID or of that
public key, past and future: the CA refuses to issue them again (user and host, renewals included)
until \`sshca ca unrevoke ID\`. A host certificate superseded by a renewal can no longer be renewed
(presented again, it gets back the renewal made from it while that one is the newest and stands).

A host certificate revoked by serial, subject or key takes with it every certificate renewed or
rekeyed from it, at any depth (other serials, and after a rekey other keys): each is revoked by
serial in the same write and named in the output (\`descendants\` in --json); \`sshca ca unrevoke ID\`
lifts them with it. A lineage is followed from the upgrade that began recording parents (store
schema 7) on: for a host certificate issued before it, the output names the --key-id revocation that
also ends what it was renewed or rekeyed to before then.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --serial 13512480951216640201 --reason "laptop stolen" --config /etc/sshca/ca.yaml',
    '<%= config.bin %> <%= command.id %> --subject 248289761001 --reason "left the company" --config /etc/sshca/ca.yaml',
    '<%= config.bin %> <%= command.id %> --key /etc/ssh/ssh_host_ed25519_key.pub --reason "host key leaked" --config /etc/sshca/ca.yaml',
    '<%= config.bin %> <%= command.id %> --key SHA256:6cP5Fqkq0Dyu7bvr2VF3wCrQ3U9MzF7WgCjHfa0VL1c --config /etc/sshca/ca.yaml',
    '<%= config.bin %> <%= command.id %> --key-id mallory@example.com --config /etc/sshca/ca.yaml',
  ]

  static override flags = {
    serial: Flags.string({description: 'the certificate serial (decimal, as sshca inspect shows it)', exactlyOne: ONE}),
    'key-id': Flags.string({description: 'every certificate with this key ID, now and in future', exactlyOne: ONE}),
    key: Flags.string({
      description: 'every certificate of this public key, now and in future: a .pub or -cert.pub file, or SHA256:…',
      exactlyOne: ONE,
    }),
    subject: Flags.string({
      description: "every unexpired certificate issued to this identity (the token's sub)",
      exactlyOne: ONE,
    }),
    reason: Flags.string({description: 'why, for the audit log'}),
    config: caConfigFlag(),
  }

  async run() {
    const {flags} = await this.parse(CaRevoke)
    const {revoke} = await import('../../ca/admin.ts')
    const r = await revoke({
      configPath: flags.config,
      ...(flags.serial ? {serial: flags.serial} : {}),
      ...(flags['key-id'] !== undefined ? {keyId: flags['key-id']} : {}),
      ...(flags.key ? {key: flags.key} : {}),
      ...(flags.subject !== undefined ? {subject: flags.subject} : {}),
      ...(flags.reason ? {reason: flags.reason} : {}),
    })
    this.out(renderRevoke(r, flags.config))
    return r
  }
}
