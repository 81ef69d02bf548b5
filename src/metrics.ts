import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** Prometheus metrics of one server (own registry: no global state, several apps per process). */
export function createMetrics(sources: { auditQueueDepth: () => number }) {
  const registry = new Registry();
  const decisions = new Counter({
    name: "butler_decisions_total",
    help: "Gateway decisions by outcome.",
    labelNames: ["decision"] as const,
    registers: [registry],
  });
  const decisionSeconds = new Histogram({
    name: "butler_decision_duration_seconds",
    help: "Time to answer an authorize call, including the durable audit write.",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  new Gauge({
    name: "butler_audit_queue_depth",
    help: "Audit events waiting for the group committer.",
    registers: [registry],
    collect() {
      this.set(sources.auditQueueDepth());
    },
  });
  const auditFailures = new Counter({
    name: "butler_audit_write_failures_total",
    help: "Calls refused because their audit event could not be written.",
    registers: [registry],
  });
  return { registry, decisions, decisionSeconds, auditFailures };
}

export type Metrics = ReturnType<typeof createMetrics>;
