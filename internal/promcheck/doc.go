// Package promcheck checks that the PromQL in deploy/grafana's dashboard
// and deploy/prometheus's alert rules names metrics a running sc-server
// exports. [Names] takes the metric names out of an expression with a
// regular expression (no PromQL parser: the project does not depend on
// the Prometheus server's code), [Exported] reads the names a /metrics
// page offers, and [ScrapeServer] builds, starts, exercises and scrapes a
// real sc-server.
package promcheck
