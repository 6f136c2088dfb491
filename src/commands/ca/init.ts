import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {obtainPassword} from '../../cli/password.ts'

export default class CaInit extends BaseCommand {
  static override summary = 'Create a new CA: X.509 root and TLS, SSH user and host CA keys, ca.yaml.'
  static override description = `Creates, in a new or empty directory: an X.509 root and intermediate (the root is what clients pin
by fingerprint), a TLS certificate for the API covering every --dns name and IP, an SSH user CA key and
an SSH host CA key (ed25519), and an enrollment key for host tokens, all encrypted at rest with the
password (scrypt + AES-256-GCM); files 0600, folders 0700; and a commented ca.yaml. Prints the root
fingerprint and the next commands. Never overwrites an existing CA.

--offline-root FILE keeps the root key out of the CA directory: it is written (sealed with the same
password) to FILE, which belongs off this box — removable media in a safe. The serving CA needs only
the intermediate and the SSH CA keys; the root key is needed again only for sshca ca intermediate,
which issues a new intermediate under the same root (clients keep their pinned fingerprint).`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --dir /etc/sshca --name Acme --dns ca.example.com,10.0.0.5 --address 0.0.0.0:9000 --password-file /root/ca-password',
    '<%= config.bin %> <%= command.id %> --dir ./ca --dns 127.0.0.1',
    '<%= config.bin %> <%= command.id %> --dir /etc/sshca --kms "pkcs11:token=sshca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/sshca/hsm-pin"',
  ]

  static override flags = {
    dir: Flags.string({description: 'directory for the new CA (created 0700)', default: '.sshca-ca'}),
    name: Flags.string({description: 'name of the CA, used in certificate subjects', default: 'sshca'}),
    dns: Flags.string({
      description: 'DNS names and IP addresses for the TLS certificate (comma-separated; repeatable)',
      multiple: true,
    }),
    address: Flags.string({description: 'host:port the API will listen on', default: '127.0.0.1:9000'}),
    'password-file': Flags.string({
      description: 'file whose first line is the password that encrypts the keys (else asked on the terminal)',
    }),
    kms: Flags.string({
      description:
        'make the SSH CA keys in a PKCS#11 token instead of files: pkcs11:token=LABEL?module-path=/path/module.so&pin-source=file:/path/pin (they never leave it)',
    }),
    'offline-root': Flags.string({
      description:
        'write the root key to this new file (outside --dir), to be taken off this box; the CA runs without it',
    }),
  }

  async run() {
    const {flags} = await this.parse(CaInit)
    const password = await obtainPassword({file: flags['password-file'], confirm: true})
    const {initCa} = await import('../../ca/init.ts')
    const r = await initCa({
      dir: flags.dir,
      name: flags.name,
      dnsNames: flags.dns ?? [],
      address: flags.address,
      password,
      ...(flags.kms ? {kms: flags.kms} : {}),
      ...(flags['offline-root'] ? {offlineRootKey: flags['offline-root']} : {}),
    })
    const host = r.dnsNames[0]!.includes(':') ? `[${r.dnsNames[0]}]` : r.dnsNames[0]
    const port = r.address.split(':').pop()
    this.out(`Created CA "${r.name}" in ${r.dir}

  Root fingerprint  ${r.rootFingerprint}
  User CA key       ${r.userCaKey}
  Host CA key       ${r.hostCaKey}
  SSH CA keys in    ${r.kms === 'file' ? 'sealed files under secrets/' : `the PKCS#11 token ${r.kms}`}
  TLS names         ${r.dnsNames.join(', ')}
  Root key          ${r.rootKeyFile ? `OFFLINE: ${r.rootKeyFile}` : 'in the CA directory (secrets/root_ca.key, sealed)'}
  Intermediate      valid until ${r.intermediateNotAfter}
  Host pattern      ${r.hostPattern === '!*' ? '!* (none: no domain in --dns; set ssh.hostPattern in ca.yaml, or clients pass sshca config --pattern)' : `${r.hostPattern} (from --dns; clients trust this CA's host certificates for these hosts only — ssh.hostPattern in ca.yaml)`}
${
  r.rootKeyFile
    ? `
The root key is NOT in ${r.dir}: it is in ${r.rootKeyFile}, sealed with the CA password. Move that file
off this box now (removable media, kept in a safe; a second copy elsewhere) and delete it here. The CA
serves without it. Bring it back only to issue a new intermediate before ${r.intermediateNotAfter}:
  sshca ca intermediate --config ${r.config} --root-key <the root key file>
`
    : ''
}
Next:
  1. Add your identity provider and rules to ${r.config} (examples are in the file), then:
       sshca ca check-config --config ${r.config}
  2. Start the CA:
       sshca ca serve --config ${r.config}${flags['password-file'] ? ` --password-file ${flags['password-file']}` : ''}
  3. On each laptop:
       sshca bootstrap --ca-url https://${host}:${port} --fingerprint ${r.rootFingerprint}
  4. On each server, trust the user CA (TrustedUserCAKeys):
       sshca config --host --dry-run
`)
    return r
  }
}
