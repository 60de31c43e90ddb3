package main

import "time"

// DTLS scenario IDs (issue 16).
const (
	hsDTLS     = "hs-full-p256-dtls12"
	hsTLS12    = "hs-full-p256-tls12"
	echoDTLS   = "echo-50x64B-dtls12"
	echoTLS12  = "echo-50x64B-tls12"
	idleDTLS10 = "idle-10000x64B-dtls12"
)

// dtlsServerArgs are added to sc-server's command line for a DTLS
// scenario: DTLS on the TCP port's number, sessions that outlive the
// opening of 10,000 (at a few hundred handshakes a second), and room for
// them.
var dtlsServerArgs = []string{"--dtls", "--dtls-idle-timeout", "10m", "--dtls-max-sessions", "19900"}

// dtlsScenarios are the DTLS lines of a full run, each timed by d. The
// DTLS server is the same whatever --engine says (--engine does not
// apply to DTLS); the TLS 1.2 lines they are compared with are in the same
// run, against the same servers.
func dtlsScenarios(d time.Duration) []scenario {
	dur := d.String()
	return []scenario{
		{ID: hsDTLS, Title: "full DTLS 1.2 handshakes with the cookie exchange, P-256 cert", Cert: certP256, DTLS: true,
			Args: []string{"handshake", "--conns", "8", "--duration", dur}},
		{ID: echoDTLS, Title: "ECHO 64 B ping-pong, 50 DTLS sessions", Cert: certP256, DTLS: true,
			Args: []string{"echo", "--conns", "50", "--size", "64", "--duration", dur}},
		{ID: idleDTLS10, Title: "10,000 concurrent DTLS sessions, each answering a 64 B ECHO, then idle", Cert: certP256, DTLS: true,
			Runs: 1, Timeout: 10 * time.Minute,
			Args: []string{"idle", "--conns", "10000", "--size", "64", "--settle", "5s", "--duration", "4s"}},
	}
}
