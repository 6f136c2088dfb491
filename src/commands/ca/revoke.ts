import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'

export default class CaRevoke extends BaseCommand {
  static override summary = 'Revoke a certificate by serial or every certificate with a key ID (on the CA box).'
  static override description = `Records the revocation in the CA's store (and its audit log file). GET /ssh/krl then serves it in the
KRL that hosts fetch with \`sshca krl\` for sshd's RevokedKeys; a revoked host certificate cannot be renewed.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --serial 13512480951216640201 --reason "laptop stolen" --config /etc/sshca/ca.yaml',
    '<%= config.bin %> <%= command.id %> --key-id mallory@example.com --config /etc/sshca/ca.yaml',
  ]

  static override flags = {
    serial: Flags.string({description: 'the certificate serial (decimal, as sshca inspect shows it)', exactlyOne: ['serial', 'key-id']}),
    'key-id': Flags.string({description: 'revoke every certificate with this key ID', exactlyOne: ['serial', 'key-id']}),
    reason: Flags.string({description: 'why, for the audit log'}),
    config: Flags.string({description: 'path of ca.yaml', default: '.sshca-ca/ca.yaml'}),
  }

  async run() {
    const {flags} = await this.parse(CaRevoke)
    const {revoke} = await import('../../ca/admin.ts')
    const r = await revoke({configPath: flags.config, ...(flags.serial ? {serial: flags.serial} : {}), ...(flags['key-id'] ? {keyId: flags['key-id']} : {}), ...(flags.reason ? {reason: flags.reason} : {})})
    const what = r.serial ? `serial ${r.serial}${r.known ? ` (${r.known.certType} certificate "${r.known.keyId}" for ${r.known.principals.join(', ')}, valid until ${r.known.validBefore})` : ' (not issued by this CA, revoked anyway)'}` : `key ID "${r.keyId}"`
    this.out(`Revoked ${what}.\nHosts stop accepting it once they fetch the KRL (sshca krl --out FILE; the renewal timer does it daily).\n`)
    return r
  }
}
