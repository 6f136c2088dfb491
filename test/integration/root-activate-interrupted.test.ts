/**
 * `ca rotate activate --kind root` renames the new root and intermediate into place, then writes the
 * TLS key and certificate the new intermediate signs. Cut short between the two (a crash, a full
 * disk), the CA was left presenting a leaf of the old intermediate: clients pinning the new root
 * failed, and `retire` later served a chain that verified to neither root. A leaf the current
 * intermediate did not sign is now reissued when the CA loads. Real files from `ca init` and the
 * real rotation commands; the interruption is the old TLS files put back after `activate`.
 */
import assert from 'node:assert/strict'
import {createPrivateKey, X509Certificate} from 'node:crypto'
import {copyFileSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {caPaths} from '../../src/ca/config/layout.ts'
import {loadTls} from '../../src/ca/keys/material.ts'
import {makeCaDir, PASSWORD} from '../helpers/ca.ts'
import {sshca} from '../helpers/cli.ts'
import {tempDir} from '../helpers/tmp.ts'

describe('a root activation cut short before its TLS writes', function () {
  this.timeout(120_000)

  it('the CA reissues its TLS leaf from the new intermediate when it loads, so the chain verifies to the new root', async () => {
    const {init, passwordFile} = await makeCaDir({})
    const p = caPaths(init.dir)
    const rotate = async (step: string, withPassword: boolean) => {
      const r = await sshca([
        'ca',
        'rotate',
        step,
        '--kind',
        'root',
        '--config',
        init.config,
        ...(withPassword ? ['--password-file', passwordFile] : []),
      ])
      assert.equal(r.code, 0, r.stderr)
    }
    await rotate('prepare', true)
    // the TLS files as they were before activate wrote them
    const saved = tempDir('sshca-tls-')
    copyFileSync(p.tlsCert, join(saved, 'tls.crt'))
    copyFileSync(p.tlsKey, join(saved, 'tls.key'))
    await rotate('activate', true)
    copyFileSync(join(saved, 'tls.crt'), p.tlsCert)
    copyFileSync(join(saved, 'tls.key'), p.tlsKey)

    const intermediate = new X509Certificate(readFileSync(p.intermediateCert))
    const root = new X509Certificate(readFileSync(p.rootCert))
    assert.ok(intermediate.verify(root.publicKey), 'the new intermediate, under the new root, is in place')
    assert.equal(new X509Certificate(readFileSync(p.tlsCert)).verify(intermediate.publicKey), false, 'the old leaf')

    const loaded = await loadTls(init.dir, PASSWORD, ['127.0.0.1'])
    assert.equal(loaded.renewed, true)
    const leaf = new X509Certificate(loaded.tls.certPem)
    assert.ok(leaf.verify(intermediate.publicKey), 'the new intermediate signed the leaf')
    assert.ok(leaf.checkPrivateKey(createPrivateKey(loaded.tls.keyPem)), 'of the TLS key')
    // written back: the next load keeps it
    assert.equal((await loadTls(init.dir, PASSWORD, ['127.0.0.1'])).renewed, false)
  })
})
