/**
 * A browser for the interop tests: opened with a sign-in URL (by step as `xdg-open URL`, by sshca as
 * $BROWSER URL), it signs in on the dev IdP's pages as $FAKE_BROWSER_LOGIN and follows the redirect
 * back to the program's loopback listener, as a person's browser would.
 */
import {driveDevSignIn} from '../../src/demo/idp-driver.ts'

const url = process.argv[2]
if (!url) throw new Error('usage: fake-browser.ts URL')
const userCode = process.env.FAKE_BROWSER_USER_CODE
const landed = await driveDevSignIn(url, {
  login: process.env.FAKE_BROWSER_LOGIN ?? 'alice',
  ...(userCode ? {userCode} : {}),
})
process.stdout.write(`${new Date().toISOString()} signed in; landed on ${landed.split('?')[0]}\n`)
