// Package prometheus holds no code: it is the home of sc-server's
// Prometheus alerting rules (sc-server.rules.yml: a certificate expiring
// within 14 days, a refused reload, renewal failing, handshake refusals
// spiking, a server not ready), their unit tests for `promtool test rules`
// (sc-server.rules.test.yml), and the Go test that runs `promtool check
// rules` and `promtool test rules` on them and checks that every metric
// they use is exported by a running sc-server. promtool is built once, at
// a pinned version, by scripts/promtool.sh. docs/DEPLOY.md says how to
// load the rules.
package prometheus
