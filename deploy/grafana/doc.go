// Package grafana holds no code: it is the home of sc-server's Grafana
// dashboard (spacecaptain.json: connections, handshakes and refusals by
// reason, requests and their latency, certificate reloads and time left,
// the process), and of the test that loads it and checks that every metric
// it queries is exported by a running sc-server. docs/DEPLOY.md says how
// to import it.
package grafana
