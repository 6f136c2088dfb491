/**
 * Prints a fresh ID token from the dev IdP (signed in as argv[3], for client argv[4]), run as its own
 * process so that it trusts the IdP's TLS root through NODE_EXTRA_CA_CERTS.
 */
import {idToken} from '../helpers/idp-token.ts'

const [issuer, login, clientId] = process.argv.slice(2)
if (!issuer || !login || !clientId) throw new Error('usage: id-token.ts ISSUER LOGIN CLIENT_ID')
process.stdout.write(`${(await idToken(issuer, {clientId, login})).idToken}\n`)
