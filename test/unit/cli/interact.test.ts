/**
 * The sign-in notices: the authorization URL, the device code and its URLs come from the CA's
 * identity provider, and reach the terminal only as text.
 */
import assert from 'node:assert/strict'
import {loginNotifier} from '../../../src/cli/interact.ts'
import {TERMINAL_UNSAFE} from '../../helpers/assert.ts'

describe('loginNotifier', () => {
  it("shows an identity provider's control sequences as escapes, never raw", () => {
    const written: string[] = []
    const stream = {isTTY: false, write: (s: string) => written.push(s) > 0} as unknown as NodeJS.WriteStream
    const n = loginNotifier(stream)
    n.notify({type: 'authorization_url', url: 'https://idp.example/auth?x=\x1b]0;owned\x07', browserOpened: false})
    n.notify({
      type: 'device_code',
      userCode: 'WDJB-MJHT\x1b[2K\rABCD-EFGH',
      verificationUri: 'https://idp.example/device\u202e',
      verificationUriComplete: 'https://idp.example/device?code=\x9b8m',
      expiresIn: 600,
    })
    n.notify({type: 'no_local_browser', reason: 'no display\x1b[5m', usingDevice: true})
    const text = written.join('')
    assert.doesNotMatch(text, TERMINAL_UNSAFE)
    assert.match(text, /WDJB-MJHT\\x1b\[2K\\x0dABCD-EFGH/)
    assert.match(text, /https:\/\/idp\.example\/device\\u\{202e\}/)
    assert.match(text, /x=\\x1b\]0;owned\\x07/)
  })

  it('says why the sign-in listener ignored a request: from another user, or without the state; and that it still waits', () => {
    const written: string[] = []
    const stream = {isTTY: false, write: (s: string) => written.push(s) > 0} as unknown as NodeJS.WriteStream
    const n = loginNotifier(stream)
    n.notify({type: 'callback_ignored', why: 'user'})
    n.notify({type: 'callback_ignored', why: 'state'})
    assert.deepEqual(written, [
      'Ignored a request to the sign-in listener that did not come from a program of yours (another user on this machine, who can read the sign-in URL?). Still waiting; if it was your own browser, press Ctrl-C and run sshca login --console.\n',
      "Ignored a request to the sign-in listener that did not carry this sign-in's state (another program on this machine?). Still waiting.\n",
    ])
  })
})
