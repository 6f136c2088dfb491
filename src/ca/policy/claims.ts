/**
 * The claims tokens of each kind of issuer are known to carry, for check-config: a rule that names a
 * claim no token will have never matches, and a template that reads one always denies. GitHub's
 * claim set is fixed, so any other name is reported; other identity providers add their own
 * claims (groups, roles, department …), so only near-misses of a known name are reported there.
 */
import {editDistance} from '../../util/text.ts'

/** OpenID Connect Core §2 and §5.1, plus the claims the major IdPs add (Google, Entra ID, Okta, Keycloak). */
export const OIDC_CLAIMS = [
  'iss',
  'sub',
  'aud',
  'exp',
  'iat',
  'nbf',
  'jti',
  'auth_time',
  'nonce',
  'acr',
  'amr',
  'azp',
  'at_hash',
  'c_hash',
  'sid',
  'name',
  'given_name',
  'family_name',
  'middle_name',
  'nickname',
  'preferred_username',
  'profile',
  'picture',
  'website',
  'email',
  'email_verified',
  'gender',
  'birthdate',
  'zoneinfo',
  'locale',
  'phone_number',
  'phone_number_verified',
  'address',
  'updated_at',
  'groups',
  'roles',
  'hd',
  'tid',
  'oid',
  'upn',
  'realm_access',
  'resource_access',
  'scope',
]

/** https://docs.github.com/actions/security-for-github-actions/security-hardening-your-deployments/about-security-hardening-with-openid-connect */
export const GITHUB_ACTIONS_CLAIMS = [
  'iss',
  'sub',
  'aud',
  'exp',
  'iat',
  'nbf',
  'jti',
  'ref',
  'ref_type',
  'ref_protected',
  'sha',
  'repository',
  'repository_id',
  'repository_owner',
  'repository_owner_id',
  'repository_visibility',
  'run_id',
  'run_number',
  'run_attempt',
  'runner_environment',
  'actor',
  'actor_id',
  'workflow',
  'workflow_ref',
  'workflow_sha',
  'job_workflow_ref',
  'job_workflow_sha',
  'event_name',
  'head_ref',
  'base_ref',
  'environment',
  'environment_node_id',
  'enterprise',
  'enterprise_id',
]

export const GITHUB_ACTIONS_ISSUER = /^https:\/\/token\.actions\.githubusercontent\.com(\/|$)/

/** Why a claim name looks wrong for this issuer (a suggestion included), or undefined when it looks fine. */
export function unknownClaim(issuer: string, claim: string): string | undefined {
  const github = GITHUB_ACTIONS_ISSUER.test(issuer)
  const known = github ? GITHUB_ACTIONS_CLAIMS : OIDC_CLAIMS
  if (known.includes(claim)) return undefined
  const near = known
    .map((k) => ({k, d: editDistance(k, claim)}))
    .filter((x) => x.d <= Math.max(1, Math.floor(claim.length / 4)))
    .sort((a, b) => a.d - b.d)[0]
  if (near) return `"${claim}" is not a claim these tokens carry; did you mean "${near.k}"?`
  if (github) return `"${claim}" is not a claim GitHub Actions tokens carry`
  return undefined
}
