/**
 * `POST /ssh/config` (step's): the ssh and sshd configuration `step ssh config` writes, rendered as
 * step-ca 0.19 renders its default templates (smallstep templates/values.go), with two changes:
 * known_hosts trusts the host CA key for this CA's host pattern (step-ca: every host, `*`), and
 * nothing names files step does not write. The request's `data` (step's `--set` and the client's
 * own StepPath, GOOS, Context …) fills the templates; its values are refused, not cleaned, when
 * they could break out of the line they go into.
 */
import type {SshConfigResponse, SshConfigTemplate} from '../../protocol/api.ts'
import type {PublicKey} from '../../ssh/keys.ts'
import {denial} from '../policy/types.ts'

type Data = Record<string, string>

/** A value goes inside a quoted ssh_config word or a path: printable, no quote, no backslash-newline games. */
const SAFE_DATA = /^[\x20-\x7e]*$/

export function templateData(raw: unknown): Data {
  if (raw === undefined || raw === null) return {}
  if (typeof raw !== 'object' || Array.isArray(raw))
    throw denial('ERR_INPUT', 'bad_request', 'data must be an object of strings')
  const out: Data = {}
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof v !== 'string') throw denial('ERR_INPUT', 'bad_request', `data.${k} must be a string`)
    if (v.length > 1024 || !SAFE_DATA.test(v) || v.includes('"'))
      throw denial('ERR_INPUT', 'bad_request', `data.${k} has characters that cannot go into an ssh configuration`)
    out[k] = v
  }
  return out
}

const keyLine = (k: PublicKey): string => `${k.type} ${k.blob.toString('base64')}`
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64')
const template = (name: string, type: string, path: string, content: string): SshConfigTemplate => ({
  name,
  type,
  path,
  comment: '#',
  content: b64(content),
})

function userTemplates(d: Data, o: {hostKeys: readonly PublicKey[]; hostPattern: string}): SshConfigTemplate[] {
  const windows = d.GOOS === 'windows'
  const slash = (p: string) => (windows ? p.replace(/\\/g, '/').replace(/^C:/, '') : p)
  const base = d.StepBasePath || d.StepPath || ''
  const ctx = d.Context ? ` --context ${d.Context}` : ''
  // the name's whitespace would split ssh_config's words; `*` (every host) is step-ca's default
  const pattern = /^[^\s"]+$/.test(o.hostPattern) ? o.hostPattern : '*'
  const stepConfig = [
    `Match exec "step ssh check-host${ctx} %h"`,
    ...(d.User ? [`\tUser ${d.User}`] : []),
    windows
      ? `\tUserKnownHostsFile "${d.StepPath ?? ''}\\ssh\\known_hosts"`
      : `\tUserKnownHostsFile "${d.StepPath ?? ''}/ssh/known_hosts"`,
    windows
      ? `\tProxyCommand C:\\Windows\\System32\\cmd.exe /c step ssh proxycommand${ctx} %r %h %p`
      : `\tProxyCommand step ssh proxycommand${ctx} %r %h %p`,
    '',
  ].join('\n')
  const includes = template(
    'step_includes.tpl',
    'prepend-line',
    '${STEPPATH}/ssh/includes',
    `Include "${slash(d.StepPath ?? '')}/ssh/config"`,
  )
  // step before 0.18 sent no template version and wants this one as a file relative to STEPPATH
  if (!d.StepSSHTemplateVersion) Object.assign(includes, {type: 'file', path: 'ssh/includes'})
  return [
    template('config.tpl', 'snippet', '~/.ssh/config', `Host *\n\tInclude "${slash(base)}/ssh/includes"`),
    includes,
    template('step_config.tpl', 'file', 'ssh/config', stepConfig),
    template(
      'known_hosts.tpl',
      'file',
      'ssh/known_hosts',
      o.hostKeys.map((k) => `@cert-authority ${pattern} ${keyLine(k)}\n`).join(''),
    ),
  ]
}

function hostTemplates(d: Data, o: {userKeys: readonly PublicKey[]}): SshConfigTemplate[] {
  const missing = ['Certificate', 'Key'].filter((k) => !d[k])
  if (missing.length)
    throw denial(
      'ERR_INPUT',
      'bad_request',
      `template sshd_config.tpl requires ${missing.join(', ')}, please use \`--set <key=value>\` flag`,
    )
  for (const k of ['Certificate', 'Key']) {
    if (/[\s/]|^\.\.?$/.test(d[k]!))
      throw denial('ERR_INPUT', 'bad_request', `data.${k} must be a file name in /etc/ssh`)
  }
  return [
    template(
      'sshd_config.tpl',
      'snippet',
      '/etc/ssh/sshd_config',
      `Match all\n\tTrustedUserCAKeys /etc/ssh/ca.pub\n\tHostCertificate /etc/ssh/${d.Certificate}\n\tHostKey /etc/ssh/${d.Key}`,
    ),
    template('ca.tpl', 'snippet', '/etc/ssh/ca.pub', o.userKeys.map((k) => `${keyLine(k)}\n`).join('')),
  ]
}

/** `userKeys`/`hostKeys`: every published CA key (both during a rotation's overlap). */
export function renderSshConfig(
  type: 'user' | 'host',
  data: unknown,
  o: {userKeys: readonly PublicKey[]; hostKeys: readonly PublicKey[]; hostPattern: string},
): SshConfigResponse {
  const d = templateData(data)
  return type === 'host' ? {hostTemplates: hostTemplates(d, o)} : {userTemplates: userTemplates(d, o)}
}
