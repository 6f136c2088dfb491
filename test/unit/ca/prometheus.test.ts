import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {PrometheusMeter} from '../../../src/ca/observe/prometheus.ts'
import {ROOT} from '../../helpers/cli.ts'

describe('the Prometheus meter and the sample Grafana dashboard', () => {
  it('every metric the dashboard queries is one the meter exports (the dashboard cannot drift)', async () => {
    const meter = new PrometheusMeter()
    const exported = new Set((await meter.registry.getMetricsAsJSON()).map((m) => m.name))
    const dash = JSON.parse(readFileSync(join(ROOT, 'docs', 'grafana-dashboard.json'), 'utf8')) as {
      panels: {targets: {expr: string}[]}[]
    }
    const used = new Set(
      dash.panels.flatMap((p) =>
        p.targets.flatMap((t) =>
          [...t.expr.matchAll(/\b(sshca_[a-z_]+?)(?:_bucket|_sum|_count)?\b/g)].map((m) => m[1]!),
        ),
      ),
    )
    assert.ok(used.size >= 9)
    for (const name of used)
      assert.ok(exported.has(name), `the dashboard queries ${name}, which the meter does not export`)
  })

  it('labels a decision by outcome, provisioner, rule, type and reason only', async () => {
    const meter = new PrometheusMeter()
    meter.decision({outcome: 'denied', provisioner: 'sso', rule: 'eng', certType: 'user', reason: 'principal_reserved'})
    const text = await meter.registry.metrics()
    assert.match(
      text,
      /sshca_certificates_total\{outcome="denied",provisioner="sso",rule="eng",type="user",reason="principal_reserved"\} 1/,
    )
  })
})
