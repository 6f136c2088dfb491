/** What a key store does for the CA (signers.ts keeps the registry of them; pkcs11.ts is one). */
import type {PublicKey} from '../../ssh/keys.ts'
import type {Signer} from '../../ssh/signature.ts'
import type {CaKeyKind, KeyRef} from './keyring.ts'

export interface KeyBackend {
  /** A new CA key pair of `kind`, named `id`; returns where it lives and its public half. */
  create(kind: CaKeyKind, id: string): Promise<{ref: KeyRef; publicKey: PublicKey}>
  /** A signer for an existing key; rejects with ERR_KEY_STORE (or ERR_CA_PASSWORD) when it cannot. */
  open(ref: KeyRef): Promise<Signer>
  /**
   * Removes a key for good (a retired one): its sealed file, or its objects in the token. A key that
   * is already gone is no error.
   */
  destroy(ref: KeyRef): Promise<void>
  /** Releases sessions and modules. */
  close(): Promise<void>
}
