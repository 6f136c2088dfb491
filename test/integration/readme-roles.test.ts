/**
 * The README's "Five minutes for each role", run as written: every command of every role's code
 * blocks, in the README's order within each role, in bash, as root, each role in its own private mount
 * namespace (`unshare -m`) with its own /root, /etc/ssh and /etc/systemd/system, and an /etc/hosts that
 * puts ca.example.com and web1.example.com on 127.0.0.1. So `sudo sshca config --host` writes what it
 * writes on a real server and `ssh alice@web1.example.com` is the real ssh against a real sshd, while
 * this machine's own ~/.ssh, /etc/ssh and units stay untouched.
 *
 * Only what a site must change is substituted, from one table (the CA's port, which the OS picks; the
 * fingerprint `ca init` printed; the serial and revocation id earlier commands printed). A command the
 * step table does not know, a placeholder left unsubstituted, or a table entry the README no longer
 * has fails the test: the README cannot drift from what works. The roles run operator, server,
 * engineer, CI job, revocation — the engineer's `ssh` needs the server the README sets up after it.
 */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {parseDocument} from 'yaml'
import {startDevIdp, type DevIdp} from '../../src/demo/idp.ts'
import {driveDevSignIn} from '../../src/demo/idp-driver.ts'
import {freePort} from '../../src/demo/openssh.ts'
import {BIN, ROOT} from '../helpers/cli.ts'
import {startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {onCleanup, run, runOk, waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'

const README = readFileSync(join(ROOT, 'README.md'), 'utf8')
const ROLES = ['The CA operator', 'An engineer', 'A CI job', 'A server', 'Revocation and the inventory'] as const
type Role = (typeof ROLES)[number]
/** Where a command runs: the CA box, the laptop, the CI runner, the server. */
type Box = 'ca' | 'laptop' | 'runner' | 'server'

/** Each role's commands: sh blocks line by line (`\` continuations joined, comments cut, `&&` split), a workflow's `run:` lines whole. */
export function roleCommands(readme: string): Map<string, string[]> {
  const section = readme.split(/^## Five minutes for each role$/m)[1]?.split(/^## /m)[0]
  assert.ok(section, 'the README has a "## Five minutes for each role" section')
  const roles = new Map<string, string[]>()
  let role: string | undefined
  const lines = section.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const heading = /^\*\*([^*]+)\*\* \([^)]*\):$/.exec(lines[i]!)
    if (heading) {
      role = heading[1]!
      roles.set(role, [])
      continue
    }
    const fence = /^```(\w*)$/.exec(lines[i]!)
    if (!fence) continue
    const body: string[] = []
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i]!)
    if (!role) continue
    if (fence[1] === 'sh') roles.get(role)!.push(...shellSteps(body))
    else if (fence[1] === 'yaml')
      for (const l of body) {
        const m = /^\s*- run: (.*)$/.exec(l)
        if (m) roles.get(role)!.push(m[1]!)
      }
  }
  return roles
}

function shellSteps(body: string[]): string[] {
  const joined = body.join('\n').replace(/\\\n\s*/g, '')
  const steps: string[] = []
  for (const line of joined.split('\n')) {
    const code = cutComment(line).trim()
    if (code) steps.push(...splitAnd(code))
  }
  return steps
}

/** The line up to a `#` that starts a comment (after whitespace, outside quotes and `$(…)`). */
function cutComment(line: string): string {
  let quote = ''
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (quote) {
      if (c === quote) quote = ''
    } else if (c === '"' || c === "'") quote = c
    else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]!))) return line.slice(0, i)
  }
  return line
}

function splitAnd(code: string): string[] {
  const out: string[] = []
  let quote = ''
  let depth = 0
  let start = 0
  for (let i = 0; i < code.length; i++) {
    const c = code[i]!
    if (quote) {
      if (c === quote) quote = ''
    } else if (c === '"' || c === "'") quote = c
    else if (c === '(') depth++
    else if (c === ')') depth--
    else if (depth === 0 && code.startsWith(' && ', i)) {
      out.push(code.slice(start, i).trim())
      start = i + 4
    }
  }
  out.push(code.slice(start).trim())
  return out
}

describe('the README, role by role, as written', function () {
  this.timeout(300_000)
  const isRoot = process.getuid?.() === 0
  let T: string
  let idp: DevIdp
  let gh: GithubIssuer
  const vars: Record<string, string> = {}
  const stops: (() => Promise<void>)[] = []

  before(async function () {
    if (!isRoot || !existsSync('/usr/bin/unshare')) this.skip() // CI runs as root: the namespaces need it
    T = tempDir('sshca-readme-')
    for (const d of [
      'bin',
      'cwd',
      'ca/root',
      'laptop/root',
      'laptop/etc-ssh',
      'runner/root',
      'runner/etc-ssh',
      'server/root',
      'server/etc-ssh/sshd_config.d',
      'server/systemd',
    ])
      mkdirSync(join(T, d), {recursive: true, mode: 0o700})
    // sshca on the PATH as an install would put it; sudo is the identity here (every box runs as root)
    writeFileSync(join(T, 'bin', 'sshca'), `#!/bin/sh\nexec ${process.execPath} ${BIN} "$@"\n`, {mode: 0o755})
    writeFileSync(join(T, 'bin', 'sudo'), '#!/bin/sh\nPATH="$PATH:/usr/sbin:/sbin" exec "$@"\n', {mode: 0o755})
    writeFileSync(join(T, 'hosts'), '127.0.0.1 localhost ca.example.com web1.example.com\n')
    for (const user of ['alice', 'deploy']) {
      if ((await run('id', [user])).code !== 0) {
        await runOk('useradd', ['-M', '-s', '/bin/sh', user])
        await runOk('usermod', ['-p', '*', user]) // sshd refuses locked accounts
      }
    }
    mkdirSync('/run/sshd', {recursive: true})
    // the server: Debian's three host keys, and an sshd_config that includes sshd_config.d as Debian's does
    const fake = join(T, 'server', 'keygen')
    mkdirSync(join(fake, 'etc', 'ssh'), {recursive: true})
    await runOk('ssh-keygen', ['-A', '-f', fake])
    for (const f of readdirSync(join(fake, 'etc', 'ssh')))
      copyFileSync(join(fake, 'etc', 'ssh', f), join(T, 'server', 'etc-ssh', f))
    writeFileSync(
      join(T, 'server', 'etc-ssh', 'sshd_config'),
      [
        'Include /etc/ssh/sshd_config.d/*.conf',
        'ListenAddress 127.0.0.1',
        'HostKey /etc/ssh/ssh_host_rsa_key',
        'HostKey /etc/ssh/ssh_host_ecdsa_key',
        'HostKey /etc/ssh/ssh_host_ed25519_key',
        'PidFile /etc/ssh/sshd.pid',
        'UsePAM no',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'LogLevel VERBOSE',
        '',
      ].join('\n'),
    )
    // the forced command, somewhere the deploy account can reach
    vars.deployScript = join(tempDir('sshca-readme-deploy-'), 'deploy.sh')
    chmodSync(dirname(vars.deployScript), 0o755)
    writeFileSync(vars.deployScript, '#!/bin/sh\necho "deployed by $USER"\n', {mode: 0o755})
    idp = await startDevIdp({clients: [{clientId: 'sshca-cli'}], quiet: true})
    gh = await startGithubIssuer()
  })

  after(async () => {
    for (const stop of stops.reverse()) await stop()
    await idp?.stop()
    await gh?.stop()
  })

  /** The namespace of one box: its own /root, /etc/ssh, units and hosts file, bound over the real ones. */
  function mounts(box: Box): string {
    const binds: [string, string][] = [
      [join(T, 'hosts'), '/etc/hosts'],
      [join(T, box, 'root'), '/root'],
    ]
    if (box === 'laptop' || box === 'runner' || box === 'server') binds.push([join(T, box, 'etc-ssh'), '/etc/ssh'])
    if (box === 'ca') binds.push([join(T, 'server', 'etc-ssh'), '/etc/ssh']) // the host's public key, as copied to the CA box
    if (box === 'server') binds.push([join(T, 'server', 'systemd'), '/etc/systemd/system'])
    return binds.map(([from, to]) => `mount --bind ${from} ${to}`).join(' && ')
  }

  function boxEnv(box: Box): NodeJS.ProcessEnv {
    // the host's CI=true (this suite in CI) is not the laptop's: only the runner box is a CI job
    const {SSH_AUTH_SOCK: _agent, SSHCA_HOME: _home, CI: _ci, GITHUB_ACTIONS: _gha, ...env} = process.env
    return {
      ...env,
      PATH: `${join(T, 'bin')}:${env.PATH}`,
      HOME: '/root',
      NO_COLOR: '1',
      BROWSER: 'none',
      SSHCA_KEYRING: 'file',
      DBUS_SESSION_BUS_ADDRESS: '',
      ...(box === 'laptop' ? {SSH_AUTH_SOCK: vars.laptopAgent} : {}),
      ...(box === 'runner'
        ? {
            CI: 'true',
            GITHUB_ACTIONS: 'true',
            ACTIONS_ID_TOKEN_REQUEST_URL: `${gh.issuer}/token?api-version=2.0`,
            ACTIONS_ID_TOKEN_REQUEST_TOKEN: gh.requestToken,
            ID_TOKEN: vars.idToken,
          }
        : {}),
    }
  }

  /** Starts a command in a box; the shell kills an ssh-agent the command started (`eval "$(ssh-agent -s)"`). */
  function start(box: Box, command: string, extraEnv: NodeJS.ProcessEnv = {}) {
    const script = `set -eo pipefail\n${mounts(box)}\ncd ${join(T, 'cwd')}\ntrap '[ -n "\${SSH_AGENT_PID:-}" ] && kill "$SSH_AGENT_PID"' EXIT\n${command}\n`
    const child = spawn('unshare', ['-m', 'bash', '-c', script], {
      env: {...boxEnv(box), ...extraEnv},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d))
    child.stderr.on('data', (d: Buffer) => (err += d))
    const exited = new Promise<{code: number | null; stdout: string; stderr: string}>((resolve) =>
      child.on('close', (code) => resolve({code, stdout: out, stderr: err})),
    )
    return {child, out: () => out, err: () => err, exited}
  }

  async function runIn(box: Box, command: string) {
    const p = start(box, command)
    const timer = setTimeout(() => p.child.kill('SIGKILL'), 120_000)
    const r = await p.exited
    clearTimeout(timer)
    assert.equal(r.code, 0, `${box}$ ${command}\nexit ${r.code}\n${r.stdout}\n${r.stderr}`)
    return r
  }

  /** A daemon in a box, stopped by pid when the test ends (unshare and bash exec into it). */
  async function daemon(box: Box, command: string, ready: RegExp) {
    const p = start(box, `exec ${command}`)
    const stop = async () => {
      if (p.child.exitCode === null) p.child.kill('SIGTERM')
      await p.exited
    }
    stops.push(stop)
    onCleanup(stop)
    await waitFor(`${ready} from ${command}`, () => ready.test(p.out() + p.err()) || p.child.exitCode !== null, 60_000)
    if (p.child.exitCode !== null) throw new Error(`${command} exited ${p.child.exitCode}:\n${p.out()}\n${p.err()}`)
    return p
  }

  /** What a site changes in the README's commands (its names stay: /etc/hosts makes them this machine). */
  function substitute(command: string): string {
    const subs: [string, () => string][] = [
      ['https://ca.example.com:9000', () => `https://ca.example.com:${need('caPort')}`],
      ['0.0.0.0:9000', () => '127.0.0.1:0'], // the OS picks the CA's port
      ['<root sha256 from ca init>', () => need('fingerprint')],
      ['<sha256>', () => need('fingerprint')],
      ['${{ vars.SSHCA_FINGERPRINT }}', () => need('fingerprint')],
      ['/etc/sshca', () => join(T, 'etc-sshca')], // a directory the namespace cannot bind over: it does not exist yet
      ['--config F', () => `--config ${join(T, 'etc-sshca', 'ca.yaml')}`],
      ['248289761001', () => 'alice@example.com'], // the dev IdP's subject for alice
      ['--serial N', () => `--serial ${need('serial')}`],
      ['unrevoke ID', () => `unrevoke ${need('revocationId')}`],
    ]
    let out = command
    for (const [from, to] of subs) if (out.includes(from)) out = out.split(from).join(to())
    const left = /<[a-z][^<>]*>/.exec(out)
    assert.equal(left, null, `the README command "${command}" has a placeholder the test does not fill: ${left?.[0]}`)
    return out
  }

  function need(name: string): string {
    assert.ok(vars[name], `no ${name} yet: the README's order changed?`)
    return vars[name]!
  }

  interface Step {
    box: Box
    /** Instead of running the line: what the test does in its place (the editor, the init system). */
    instead?: () => Promise<void>
    before?: () => Promise<void> | void
    after?: (r: {stdout: string; stderr: string}) => Promise<void> | void
  }

  /** Every README command, by its exact text. */
  const steps: Record<Role, Record<string, Step>> = {
    'The CA operator': {
      '(umask 077; openssl rand -base64 24 > /root/ca-pw)': {box: 'ca'},
      'sshca ca init --dir /etc/sshca --name Acme --dns ca.example.com --address 0.0.0.0:9000 --password-file /root/ca-pw':
        {
          box: 'ca',
          after: (r) => void (vars.fingerprint = /Root fingerprint\s+([0-9a-f]{64})/.exec(r.stdout)![1]!),
        },
      '$EDITOR /etc/sshca/ca.yaml': {
        box: 'ca',
        // the test is the editor: the README's own policy, with the site's issuers, command and network
        instead: async () => {
          const file = join(T, 'etc-sshca', 'ca.yaml')
          const doc = parseDocument(readFileSync(file, 'utf8'))
          doc.set('provisioners', readmePolicy())
          writeFileSync(file, doc.toString())
        },
      },
      'sshca ca check-config --config /etc/sshca/ca.yaml': {box: 'ca', after: (r) => assert.match(r.stdout, /valid/)},
      'sshca ca explain --config /etc/sshca/ca.yaml --claims alice.json': {
        box: 'ca',
        before: () =>
          writeFileSync(
            join(T, 'cwd', 'alice.json'),
            JSON.stringify({
              iss: idp.issuer,
              aud: 'sshca-cli',
              sub: 'alice@example.com',
              email: 'alice@example.com',
              email_verified: true,
            }),
          ),
        after: (r) => assert.match(r.stdout, /engineers/),
      },
      'sshca ca serve --config /etc/sshca/ca.yaml --password-file /root/ca-pw': {box: 'ca'}, // run as a daemon below
    },
    'A server': {
      '(umask 077; sshca ca token --host web1.example.com --principal 10.0.0.7 --ttl 30m --config /etc/sshca/ca.yaml --password-file /root/ca-pw | tail -1 > enroll.token)':
        {box: 'ca'},
      'sudo sshca bootstrap --ca-url https://ca.example.com:9000 --fingerprint <sha256>': {box: 'server'},
      'sudo sshca certificate --host --sign --token-file - web1.example.com /etc/ssh/ssh_host_ed25519_key.pub --principal 10.0.0.7 < enroll.token':
        {box: 'server'},
      'sudo sshca config --host': {box: 'server', after: (r) => assert.match(r.stdout + r.stderr, /ssh_host_rsa_key/)},
      'sudo sshd -t': {box: 'server'},
      'sudo systemctl reload ssh': {
        box: 'server',
        // no init system here: the test starts the sshd that reload would have re-read
        instead: async () => {
          for (let attempt = 0; ; attempt++) {
            const port = await freePort()
            try {
              await daemon(
                'server',
                `/usr/sbin/sshd -D -e -f /etc/ssh/sshd_config -p ${port}`,
                new RegExp(`Server listening on 127\\.0\\.0\\.1 port ${port}`),
              )
              vars.sshPort = String(port)
              break
            } catch (err) {
              if (attempt >= 3 || !/Address already in use|Bind to port/.test(String(err))) throw err
            }
          }
          for (const box of ['laptop', 'runner'] as const) {
            writeFileSync(
              join(T, box, 'etc-ssh', 'ssh_config'),
              `Host web1.example.com\n  Port ${vars.sshPort}\n  HostKeyAlias web1.example.com\n  BatchMode yes\n  ConnectTimeout 10\n`,
            )
          }
        },
      },
      'sudo systemctl daemon-reload': {box: 'server', instead: async () => undefined},
      'sudo systemctl enable --now sshca-krl.timer sshca-renew@ssh_host_ed25519_key.timer': {
        box: 'server',
        // what the timers start: their services' commands, run as the units name them
        instead: async () => {
          const units = join(T, 'server', 'systemd')
          for (const unit of ['sshca-krl.timer', 'sshca-krl.service', 'sshca-renew@.timer', 'sshca-renew@.service'])
            assert.ok(existsSync(join(units, unit)), `config --host wrote ${unit}`)
          const exec = (unit: string) => /^ExecStart=(.*)$/m.exec(readFileSync(join(units, unit), 'utf8'))![1]!
          await runIn('server', exec('sshca-krl.service'))
          await runIn('server', exec('sshca-renew@.service').replaceAll('%i', 'ssh_host_ed25519_key'))
        },
      },
    },
    'An engineer': {
      'sshca bootstrap --ca-url https://ca.example.com:9000 --fingerprint <root sha256 from ca init>': {box: 'laptop'},
      'sshca config': {box: 'laptop'},
      'ssh alice@web1.example.com': {
        box: 'laptop',
        // the first ssh signs in by itself (sshca config's Match exec "sshca login --ensure"), in the
        // laptop's browser; the next one just connects, opening no browser
        instead: async () => {
          const urlFile = join(T, 'browser-url')
          const browser = {BROWSER: join(T, 'bin', 'browser'), DISPLAY: ':0'}
          // written whole, then renamed: the test reads it the moment it exists
          writeFileSync(browser.BROWSER, `#!/bin/sh\necho "$1" > ${urlFile}.tmp && mv ${urlFile}.tmp ${urlFile}\n`, {
            mode: 0o755,
          })
          const p = start('laptop', 'ssh alice@web1.example.com', browser)
          await waitFor(
            'ssh to open the sign-in in the browser',
            () => existsSync(urlFile) || p.child.exitCode !== null,
            60_000,
          )
          assert.ok(existsSync(urlFile), `ssh exited ${p.child.exitCode} without signing in:\n${p.out()}\n${p.err()}`)
          await driveDevSignIn(readFileSync(urlFile, 'utf8').trim(), {login: 'alice@example.com'})
          const r = await p.exited
          assert.equal(r.code, 0, r.stderr)
          rmSync(urlFile)
          const again = await start('laptop', 'ssh alice@web1.example.com', browser).exited
          assert.equal(again.code, 0, again.stderr)
          assert.equal(existsSync(urlFile), false, 'the second ssh signed in again')
        },
      },
      'sshca list': {box: 'laptop', after: (r) => assert.match(r.stdout, /alice@example\.com/)},
      'sshca status': {box: 'laptop', after: (r) => assert.match(r.stdout, /^✓ Certificate\s/m)},
    },
    'A CI job': {
      'sshca bootstrap --ca-url https://ca.example.com:9000 --fingerprint ${{ vars.SSHCA_FINGERPRINT }} && sshca config':
        {box: 'runner'},
      'eval "$(ssh-agent -s)" && sshca login --github-actions && ssh deploy@web1.example.com ./deploy.sh': {
        box: 'runner',
        after: (r) => assert.match(r.stdout, /deployed by deploy/),
      },
      "ssh-keygen -q -t ed25519 -N '' -f job_key": {box: 'runner'},
      'curl --fail --cacert root_ca.crt -H "Authorization: Bearer $ID_TOKEN" -H \'Content-Type: application/json\' --data "{\\"public_key\\": \\"$(cat job_key.pub)\\"}" https://ca.example.com:9000/sign > job_key-cert.pub':
        {
          box: 'runner',
          before: async () => {
            copyFileSync(join(T, 'etc-sshca', 'certs', 'root_ca.crt'), join(T, 'cwd', 'root_ca.crt')) // published beside the fingerprint
            // the job's token for the CI provisioner's audience (the README's policy gives it the CA's URL)
            const ci = (readmePolicy() as {name: string; audience?: string}[]).find((p) => p.name === 'ci')!
            vars.idToken = await gh.mint({aud: ci.audience!})
          },
        },
      'ssh -i job_key deploy@web1.example.com ./deploy.sh': {
        box: 'runner',
        after: (r) => assert.match(r.stdout, /deployed by deploy/),
      },
    },
    'Revocation and the inventory': {
      'sshca ca certs --config F --active': {box: 'ca', after: (r) => assert.match(r.stdout, /alice@example\.com/)},
      'sshca ca certs --config F --subject 248289761001 --since 30d --json': {
        box: 'ca',
        after: (r) => {
          const {certificates: certs} = JSON.parse(r.stdout) as {certificates: {serial: string; keyId: string}[]}
          assert.ok(certs.length >= 1 && certs.every((c) => c.keyId === 'alice@example.com'), r.stdout)
          vars.serial = certs[0]!.serial
        },
      },
      'sshca ca revoke --serial N --reason "laptop stolen" --config F': {box: 'ca'},
      'sshca ca revoke --subject 248289761001 --reason "left" --config F': {box: 'ca'},
      'sshca ca revoke --key /etc/ssh/ssh_host_ed25519_key.pub --config F': {box: 'ca'},
      'sshca ca revoke --key-id gha:acme/app --config F': {
        box: 'ca',
        // a key ID revocation blocks the future too: the command says so, and how to undo it (issue 17 item 8)
        after: (r) =>
          assert.match(
            r.stdout,
            /^Revoked key ID "gha:acme\/app" \(revocation (\S+)\)\.\n {2}0 unexpired certificate\(s\) carry it now\.\nThis also refuses every future certificate with that key ID \(sign-ins, enrolments, renewals\)\.\nUndo: sshca ca unrevoke \1 --config \S+\nHosts pick this up at their next `sshca krl` \(the sshca-krl timer runs hourly\); now: run `sshca krl` on them\.\n/,
          ),
      },
      // the operator undoes the serial's revocation, picked by what it revokes (rows made in the same second come in any order)
      'sshca ca revocations --config F': {
        box: 'ca',
        after: (r) =>
          void (vars.revocationId =
            new RegExp(`^(\\S+)\\s+serial ${need('serial')}\\s+laptop stolen`, 'm').exec(r.stdout)?.[1] ?? ''),
      },
      'sshca ca unrevoke ID --config F': {
        box: 'ca',
        after: (r) =>
          assert.match(
            r.stdout,
            new RegExp(
              `^Removed revocation ${need('revocationId')} \\(serial ${need('serial')}, revoked .*: laptop stolen\\)\\.\nHosts accept it again after their next \`sshca krl\`\\.\n$`,
            ),
          ),
      },
    },
  }

  /** The README's policy section, as an operator adapts it: their IdP, their deploy script, their network. */
  function readmePolicy(): unknown[] {
    const block = /^## The policy \(`ca\.yaml`\)\n+```yaml\n([\s\S]*?)\n```/m.exec(README)
    assert.ok(block, 'the README has a policy example')
    const policy = parseDocument(block[1]!).toJS() as {
      provisioners: {name: string; issuer: string; rules: {certificate: Record<string, unknown>}[]}[]
    }
    for (const p of policy.provisioners) {
      if (p.name === 'sso') p.issuer = idp.issuer
      if (p.name === 'ci') {
        p.issuer = gh.issuer
        for (const r of p.rules)
          Object.assign(r.certificate, {forceCommand: vars.deployScript, sourceAddress: ['127.0.0.1/32']})
      }
    }
    return policy.provisioners
  }

  async function runRole(role: Role) {
    const commands = roleCommands(README).get(role)
    assert.ok(commands?.length, `the README has commands for "${role}"`)
    const known = steps[role]
    for (const command of commands) {
      const step = known[command]
      assert.ok(
        step,
        `the README's "${role}" runs a command this test does not know — add it to the step table:\n${command}`,
      )
      await step.before?.()
      if (step.instead) {
        await step.instead()
        continue
      }
      if (/^sshca ca serve\b/.test(command)) {
        const p = await daemon(step.box, substitute(command), /sshca CA listening on https:\/\/\S+:(\d+) /)
        vars.caPort = /sshca CA listening on https:\/\/\S+:(\d+) /.exec(p.err())![1]!
        continue
      }
      const r = await runIn(step.box, substitute(command))
      await step.after?.(r)
    }
    assert.deepEqual(
      Object.keys(known).filter((c) => !commands.includes(c)),
      [],
      `commands in the step table that the README's "${role}" no longer has`,
    )
  }

  it('has exactly the roles the test walks', () => {
    assert.deepEqual([...roleCommands(README).keys()].sort(), [...ROLES].sort())
  })

  it('the CA operator: a password file, init, the policy, check-config, explain, serve', async () => {
    await runRole('The CA operator')
  })

  it("a server: an enrollment token, bootstrap, its host certificate, config --host, sshd, the timers' commands", async () => {
    await runRole('A server')
  })

  it('an engineer: bootstrap, config, ssh to the server (which signs in by itself), list, status', async () => {
    vars.laptopAgent = await laptopAgent()
    await runRole('An engineer')
  })

  it("a CI job: the workflow's run lines, then the curl path", async () => {
    await runRole('A CI job')
  })

  it('revocation and the inventory: certs, revoke four ways, revocations, unrevoke', async () => {
    await runRole('Revocation and the inventory')
  })

  it("what was revoked is refused: after the laptop's sshca config, ssh refuses the revoked host", async () => {
    const krlService = readFileSync(join(T, 'server', 'systemd', 'sshca-krl.service'), 'utf8')
    await runIn('server', /^ExecStart=(.*)$/m.exec(krlService)![1]!)
    await runIn('laptop', 'sshca config')
    const p = start('laptop', 'ssh alice@web1.example.com true')
    const r = await p.exited
    assert.notEqual(r.code, 0, r.stdout)
    // the host's key was revoked (--key), and only the serial's revocation was undone
    assert.match(
      r.stderr,
      /Host key ED25519-CERT \S+ revoked by file \/root\/\.sshca\/contexts\/ca\.example\.com\/revoked_host_keys\.krl/,
    )
  })

  /** The engineer's ssh-agent (a laptop has one running): its socket outside the namespaces' binds. */
  async function laptopAgent(): Promise<string> {
    const socket = join(T, 'laptop-agent.sock')
    const agent = spawn('ssh-agent', ['-D', '-a', socket], {stdio: 'ignore'})
    const stop = async () => void (agent.exitCode === null && agent.kill('SIGTERM'))
    stops.push(stop)
    onCleanup(stop)
    await waitFor("the laptop's ssh-agent", () => existsSync(socket) || agent.exitCode !== null)
    return socket
  }
})
