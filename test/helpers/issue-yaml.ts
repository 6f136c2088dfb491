/**
 * The policy of the product's issue, as ca.yaml: people through SSO, CI through GitHub's OIDC tokens.
 * Shared by the policy and config unit tests: a test file imports no other test file, whose tests
 * would run again in the importer's (test/unit/test-suite.test.ts).
 */
export const ISSUE_YAML = `
disabled: false
provisioners:
  - name: sso
    type: oidc
    issuer: https://idp.example.com     # discovery: issuer + /.well-known/openid-configuration
    clientId: sshca-cli                 # audience defaults to clientId
    rules:
      - name: engineers
        match: { email_verified: true, email: { domain: example.com } }
        certificate:
          principals: ["\${email.local}", "\${email}"]
          keyId: "\${email}"
          ttl: 8h
          extensions: [permit-pty]
  - name: ci
    type: oidc
    issuer: https://token.actions.githubusercontent.com
    audience: sshca-ci
    maxTtl: 15m
    rules:
      - name: deploy
        match: { repository: acme/app, ref: refs/heads/main, event_name: [push, workflow_dispatch] }
        certificate:
          principals: [deploy]
          ttl: 10m
          keyId: "gha:\${repository}:\${run_id}"
          forceCommand: /usr/local/bin/deploy.sh
          sourceAddress: ["10.0.0.0/8"]
`
