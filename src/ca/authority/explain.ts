/**
 * `sshca ca explain`: what the policy does with a set of claims, rule by rule, and the certificate
 * it would issue. Reads claims only; it never contacts an issuer, so a token's signature is not
 * checked here (the command says so).
 */
import {decodeJwt, type JWTPayload} from 'jose'
import {SshcaError, isSshcaError} from '../../errors.ts'
import {formatDuration} from '../../util/duration.ts'
import type {CaConfig, ProvisionerConfig} from '../config/config.ts'
import {routeClaims} from '../provisioner/oidc.ts'
import {
  buildCertificateSpec,
  evaluateRule,
  selectRule,
  type Claims,
  type PrincipalsFromOutcome,
  type RuleOutcome,
} from '../policy/policy.ts'
import {reasonOf} from '../policy/types.ts'

export interface ExplainResult {
  provisioner: string
  /** How the provisioner was chosen: named on the command line, or from iss/aud/azp. */
  routedBy: 'flag' | 'claims'
  signatureChecked: false
  rules: RuleOutcome[]
  decision:
    | {
        issued: true
        rule: string
        certificate: {
          principals: string[]
          keyId: string
          ttl: string
          ttlSeconds: number
          criticalOptions: Record<string, unknown>
          extensions: string[]
        }
        principalsFrom?: PrincipalsFromOutcome
      }
    | {issued: false; reason: string; message: string}
}

export function claimsFromToken(token: string): JWTPayload {
  try {
    return decodeJwt(token.trim())
  } catch (err) {
    throw new SshcaError('ERR_INPUT', `--token is not a JWT: ${(err as Error).message}`)
  }
}

export function explain(
  config: CaConfig,
  claims: Claims,
  provisionerName: string | undefined,
  nowSeconds: number,
): ExplainResult {
  let p: ProvisionerConfig
  if (provisionerName !== undefined) {
    const found = config.provisioners.find((x) => x.name === provisionerName)
    if (!found)
      throw new SshcaError('ERR_PROVISIONER_NOT_FOUND', `no provisioner "${provisionerName}" in ${config.path}`, {
        hint: `provisioners: ${config.provisioners.map((x) => x.name).join(', ') || '(none)'}`,
      })
    p = found
  } else {
    try {
      p = routeClaims(config.provisioners, claims)
    } catch (err) {
      throw new SshcaError(
        'ERR_USAGE',
        `cannot tell which provisioner these claims are for: ${(err as Error).message}`,
        {hint: 'name it with --provisioner'},
      )
    }
  }
  const base = {
    provisioner: p.name,
    routedBy: provisionerName === undefined ? ('claims' as const) : ('flag' as const),
    signatureChecked: false as const,
  }
  const rules = p.rules.map((r) => evaluateRule(r, claims))
  try {
    const {rule} = selectRule(p, claims)
    const spec = buildCertificateSpec(p, rule, claims, config.ssh, nowSeconds)
    if (config.disabled)
      return {
        ...base,
        rules,
        decision: {issued: false, reason: 'policy_disabled', message: 'issuance is disabled in this config'},
      }
    return {
      ...base,
      rules,
      decision: {
        issued: true,
        rule: rule.name,
        certificate: {
          principals: spec.principals,
          keyId: spec.keyId,
          ttl: formatDuration(spec.ttl),
          ttlSeconds: spec.ttl,
          criticalOptions: spec.criticalOptions,
          extensions: Object.keys(spec.extensions),
        },
        ...(spec.principalsFrom ? {principalsFrom: spec.principalsFrom} : {}),
      },
    }
  } catch (err) {
    if (!isSshcaError(err)) throw err
    return {...base, rules, decision: {issued: false, reason: reasonOf(err) ?? err.code, message: err.message}}
  }
}
