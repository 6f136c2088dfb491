import assert from 'node:assert/strict'
import {shortDuration, table, validityText} from '../../../src/cli/format.ts'
import {EXIT, EXIT_CODES} from '../../../src/cli/exit-codes.ts'
import {errorJson, errorText, exitCodeFor, toSshcaError} from '../../../src/cli/errors.ts'
import {ERROR_CODES, SshcaError} from '../../../src/errors.ts'
import {FOREVER} from '../../../src/ssh/cert.ts'

describe('cli formatting', () => {
  it('prints durations with their two largest units', () => {
    assert.equal(shortDuration(0), '0s')
    assert.equal(shortDuration(45), '45s')
    assert.equal(shortDuration(750), '12m30s')
    assert.equal(shortDuration(3600), '1h0m')
    assert.equal(shortDuration(8 * 3600 - 60), '7h59m')
    assert.equal(shortDuration(3 * 86400 + 4 * 3600 + 5), '3d4h')
    assert.equal(shortDuration(-5), '0s')
  })

  it('words validity as ssh-keygen does', () => {
    process.env.TZ = 'UTC'
    assert.equal(validityText(0n, FOREVER), 'forever')
    assert.equal(validityText(0n, 1_893_456_000n), 'before 2030-01-01T00:00:00')
    assert.equal(validityText(1_577_836_800n, FOREVER), 'after 2020-01-01T00:00:00')
    assert.equal(validityText(1_577_836_800n, 1_893_456_000n), 'from 2020-01-01T00:00:00 to 2030-01-01T00:00:00')
  })

  it('pads table columns', () => {
    assert.equal(
      table([
        ['A', 'BB', 'C'],
        ['aaa', 'b', 'c'],
      ]),
      'A    BB  C\naaa  b   c\n',
    )
  })
})

describe('error codes → exit codes', () => {
  it('maps every error code, and the documented ones to their numbers', () => {
    for (const code of Object.keys(ERROR_CODES))
      assert.equal(typeof EXIT_CODES[code as keyof typeof ERROR_CODES], 'number', code)
    assert.equal(exitCodeFor(new SshcaError('ERR_AGENT_UNAVAILABLE', 'x')), 5)
    assert.equal(exitCodeFor(new SshcaError('ERR_CERT_SIGNATURE_INVALID', 'x')), 3)
    assert.equal(exitCodeFor(new SshcaError('ERR_TRUST_FINGERPRINT_MISMATCH', 'x')), 4)
    assert.equal(exitCodeFor(new SshcaError('ERR_CA_DENIED', 'x')), 7)
    assert.equal(exitCodeFor(new SshcaError('ERR_LOGIN_CANCELLED', 'x')), EXIT.CANCELLED)
  })

  it('renders a message with its code and hint, in text and JSON', () => {
    const e = new SshcaError('ERR_AGENT_UNAVAILABLE', 'no agent', {hint: 'start one'})
    assert.equal(errorText(e, false), 'Error [ERR_AGENT_UNAVAILABLE]: no agent\n  → start one\n')
    assert.deepEqual(errorJson(e), {error: {code: 'ERR_AGENT_UNAVAILABLE', message: 'no agent', hint: 'start one'}})
  })

  it('turns anything else into ERR_INTERNAL (exit 1)', () => {
    const e = toSshcaError(new RangeError('boom'))
    assert.equal(e.code, 'ERR_INTERNAL')
    assert.equal(exitCodeFor(e), 1)
  })
})

describe('noLocalBrowser: when a loopback sign-in cannot work here', () => {
  it('an SSH session or a display-less Unix; never when $BROWSER says how to open URLs', async () => {
    const {noLocalBrowser} = await import('../../../src/cli/interact.ts')
    assert.match(noLocalBrowser({SSH_CONNECTION: '1 2 3 4'}, 'darwin')!, /SSH session/)
    assert.match(noLocalBrowser({SSH_TTY: '/dev/pts/1', DISPLAY: ':0'}, 'linux')!, /SSH session/)
    assert.match(noLocalBrowser({}, 'linux')!, /no display/)
    assert.equal(noLocalBrowser({DISPLAY: ':0'}, 'linux'), undefined)
    assert.equal(noLocalBrowser({WAYLAND_DISPLAY: 'wayland-0'}, 'linux'), undefined)
    assert.equal(noLocalBrowser({}, 'darwin'), undefined)
    assert.equal(noLocalBrowser({BROWSER: 'none', SSH_CONNECTION: '1 2 3 4'}, 'linux'), undefined)
  })
})
