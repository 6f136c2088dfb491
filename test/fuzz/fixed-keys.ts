/**
 * Fixed key material for the fuzz properties, so a seed replays the same inputs: ed25519 and ECDSA
 * keys derived from a label, and two RSA keys generated once (RSA cannot be derived cheaply).
 * TEST KEYS ONLY: they are public in this repository and sign nothing outside the fuzz suite.
 */
import {createHash, createPrivateKey} from 'node:crypto'
import {fromKeyObject, type KeyKind, type PrivateKey} from '../../src/ssh/private-key.ts'

const RSA_2048_A = `-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCL1WslBS6HFhi+
1wX2WTZ6pD5T5c0XDUdqW7SDjrW8qz9sBRV0zThSWuqmoj1+B2AkdcRYboCqCFG9
hO6u3cWd9rRfAjmo4ZdxmjWQTpGO7e+jZ8WwOEwbt66iALL1bfPxM1ePfrUyc83u
bcSTWsHmEI3R/dzDGY2f0avMxQpqate80pAIivseH7P6w6wReQ1POj9zRta1USFy
hB7XeXYAz8CsB9MOyfCRptutnWf27QeHUe84iRDXSzPJOfVjilWxPip/09cnedFl
GqAGcBfXeYPeue+9aVuMBZgoc81B2RaYPhy77Zz/ImK3uv9yfX0vILXtkB/g/gSs
aehvOyXXAgMBAAECggEACDg1rHRp2r5IGsJa8wh6ylS95oKbPp/6MwdMTMYRFWkK
OQLyKEPT7AtfawdzDpBybKeQ22iLdEiO6Cat57uDh+3eMQ4uw32XQFyXNMdZiQmg
IiknFrJdzuyffZ2wPKWyRtsEv5uWx8NvjHS0BGa7qmwOBL+jwBglb1/iIGRIth6W
wK6NtddkhC69lMlbetxghyrxyRuE3K6oLGy1mydcyOh1GQRJdflYtXbFrWhqKexH
iVVs8rt9hCbKOHqN5Ky0wfcO8/urAWHvXxe58D2oKu9s/EMKLIWGS/nYCWWaJrJq
TizRdKa4W3k9o8uWgUmjX0klEN9M3BWUae6Ma8+rSQKBgQDBr0yVe9L2OZ8bU868
XgnaEBc+iFhDQm1eBLG9tblb+Q+rjdrF+4tGR0VTl16qIofpfOK9WZ62HnMhwdLA
goiX3e23Ezypt8DLBTyRb1o/hJHP8gT4oPVGEAWoKeZtKU07W5BNtA7y0DfzosAY
G3tOx/jr5ERo3Q+y4FudYUj5IwKBgQC40rbLt9y+dU8atd5Yv7zbsQdAWtz9c1IE
1fCMEdkXmQuYWojE475XylaDW1QDS4975f+UNgdVaE30tIdeCuYiesnjdimve2Z7
81fAwOOfnz4Y6PYxgiWdXsBAlguZn9+4YFV+qFe4R9ccUrjfng9F413QgNfLQg7C
iMNr1hjdvQKBgFUz5n7D7/P9OS7uWT2oKLFS7sbFd/5ulGoNqpsH/Dinges4Bgue
MpCB/c9eAXjao+tk0uH1MMpw7rjk6O9i/O/B4zbsMX1/pkIpVZGs6IiUqwhNMT6m
n/9oQPTPKdzPlHgOOZbVJNZQHq0A5Xw1arMnaStsSWPQC33nEKZVC6L9AoGAJp24
HbZrw8uE3KLVMxvUnN5PEo4pkDcREvuUR9/OyRRsDMgVvXWMJpGbI9ToJ8wYzZ1P
mirzu0+QwikaA3cpgFjBZ+ofaY/R6OH+GsLyjD5cXh4Gmm+D5m6Ooq/2+oEh4EcY
dd88fL9d3YgXInnG3SZVSqQw8kH6DYE/u38/MM0CgYB8N1ND9dh/vddDoV1VC8Ss
lXS7ISGYjKVWfUYivgC0AGNxMrLS+3/WdrXrxT5vsD/asFJ3i40MP5QR5ot+I+h/
Tep8CqjJWJTiRg0gyWVxCaaKDwZ1or+nw8baMcgYAOK1jYdDBtUvtdUl7H3/IY4l
to+GkUBgLxCO1SB2XOG1mg==
-----END PRIVATE KEY-----`
const RSA_2048_B = `-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC7kvtWxlc9ehec
d+mDuMj9TUWXBQy6HJ7sGAHPRpxKo8084CXnZLfT0BJVPQVaUCeOjHGn4/5PbSEy
U/+UGlxJCiBHXQVnlP82iLMBA5Nn0/RnjcL9jqGWECyzzasmY3LxR9UCwHFGLp4a
HcHyfBCaXY1jiraYpluoUqlmFhSjLVNyL0K5EiVDzyBwpnw+lUoQjKvReiELbdWA
EdKy5HbsUtCMmmNWzdpp+oMB0fNlpgl3KUdLIiyY7g/9QcwpkbmP8vjG7JDoS/cC
bOJFShg1UVzMRD5Lg+S0YG6bbu6OOfeKgOeRnzeDPm9Iyejft4pvFaxgNj/qg94u
lvtHI1lHAgMBAAECggEADULYSiDo92EJB6Lipia2RFI7jUW/dJj5aK+ke8b+Mw4J
leLdoH0FEhCFJfQ+dfgcvn3nZdCUoNY89pXsXR16ph9Ke5Zz/11lUwcEa29D80nk
3ugC1Rz0XOuf0sZuRzSDYn41l7rgnJmcdomMC1ysv9JwCzg6Az4fqh14pHhYf9YM
AzrmCwSMJ8vEVFSKh59wSH0J2/9iKk89M5ejWNYQ8qpaoWucRst1VaysEhtDFfGp
WldrHBNHmQS7sPfEMaPWpMKs4lFRAvvJUTPqlUXXVlmnN7dZQab+8+/OFnC2NbQX
Ydl0qvQj+Qd6QdZa2q0mf7sYCWu0oH2Vv+rj686HoQKBgQD0eTlj++/X2a0AGi4V
Qtm4FrhM2xELJmeUr9NbKDZMTVq496xg+ag6rAXwblIOWmAYiqkvXJ+7PEN7M5+g
tegu1jYXuYSL8w0PP9ECfeZsEJ6hg+Z/Mb+vXMxM6MKDakQPg9y0zO12xbzKsnlU
PS3WKWoBXwklnzgnv5JAhaOQhQKBgQDEavyTyP+5P0MfhaTjQQUrui4eE5akDllO
I3GUBoN8uLfa0Tbr6MO17W9IT8LLRFNQZhXbLsOoczDXN4EHM9zyff401Tj7XUvH
4Wh3B4ga2310tKpO/qRsbo7vxgqIGzbSjf+0G8zZR/YBfCDg5ip1dRlfwpJbs5AH
BK28OkEyWwKBgQC1g2gUD1OlrO3g/I8opAjowJ24GpLN94bCg8VmkjW2c1yfpuyq
19KLNXv3ZsGv/HQK5LD3BEtohjcIO20Sst0gIVXqSYjbK+uPXe9+bSHvLGvLOhai
a7qJplnd5Je/YOAFsP7mkpzhKbGhwd+Jpx7oOrmFKR2ufEgCYx9gnpixzQKBgQC4
1+IohfC6eaGGibO5tdfS5dw+q7qJW4OJuGtLnbGh7wf+4gKokh2UGQUv7PfpaLxr
HhcVdPXmkbj14KMJjzIv9ogDWmHMlGkbirJPygO5GrP+34Ki4psD/CuB1ELXAZ1f
Gwj3i24FUOZfUVxzqcdtUCz35Fjt+ZbiM/H4AG6YnwKBgCK/rl6UbW2kPhyn800G
uydEf2UX7FWRuX8+uXNhMEIIHO7zkIiAvwn6IByWFPeSS7BO1KBH19S1HWmKaO+/
samTUaZII7Dr/EVoLpYtO2P0kNSKS7rhC2cvnLqV1Qg65Ko8vrLHpmJJCDE3hqx1
/KBjBk+69f5MS0bs0J4Q8znP
-----END PRIVATE KEY-----`

const der = (tag: number, body: Buffer): Buffer =>
  Buffer.concat([body.length < 0x80 ? Buffer.of(tag, body.length) : Buffer.of(tag, 0x81, body.length), body])
const bytes = (label: string, n: number): Buffer => {
  const out: Buffer[] = []
  for (let i = 0; out.length * 32 < n; i++) out.push(createHash('sha256').update(`sshca-fuzz:${label}:${i}`).digest())
  return Buffer.concat(out).subarray(0, n)
}
const CURVE_OIDS = {ecdsa: '2a8648ce3d030107', 'ecdsa-p384': '2b81040022', 'ecdsa-p521': '2b81040023'} as const
const CURVE_SIZES = {ecdsa: 32, 'ecdsa-p384': 48, 'ecdsa-p521': 66} as const

/** The same key for the same kind and label, every run. RSA keys: labels 'a' and 'b'. */
export function fixedKey(kind: KeyKind, label: string): PrivateKey {
  if (kind === 'ed25519') {
    // PKCS#8 for Ed25519 is a fixed prefix and the 32-byte seed (RFC 8410)
    const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), bytes(`ed25519:${label}`, 32)])
    return fromKeyObject(createPrivateKey({key: pkcs8, format: 'der', type: 'pkcs8'}))
  }
  if (kind === 'rsa') return fromKeyObject(createPrivateKey(label === 'a' ? RSA_2048_A : RSA_2048_B))
  // SEC1 ECPrivateKey without the public point: OpenSSL derives it
  const d = bytes(`${kind}:${label}`, CURVE_SIZES[kind])
  if (kind === 'ecdsa-p521') d[0]! &= 0x01
  const sec1 = der(
    0x30,
    Buffer.concat([
      Buffer.from('020101', 'hex'),
      der(0x04, d),
      der(0xa0, der(0x06, Buffer.from(CURVE_OIDS[kind], 'hex'))),
    ]),
  )
  return fromKeyObject(createPrivateKey({key: sec1, format: 'der', type: 'sec1'}))
}
