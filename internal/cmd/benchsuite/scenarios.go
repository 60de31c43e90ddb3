package main

import "time"

// certKind is the server certificate a scenario uses; empty means
// plaintext.
type certKind string

const (
	certP256    certKind = "p256"
	certRSA4096 certKind = "rsa4096"
	certEd25519 certKind = "ed25519"
	certNone    certKind = ""
)

// scenario is one line of the matrix: a bench command line and the servers
// it runs against.
type scenario struct {
	ID    string
	Title string
	Cert  certKind
	// Args are sc-client bench's arguments, the mode first; the suite
	// adds --server, --pid, the trust flags, --wait and --json.
	Args []string
	// Ref says whether the reference server runs it too (sc-server with
	// each engine always does).
	Ref bool
	// Runs overrides the suite's number of runs (0: the suite's).
	Runs int
	// Timeout bounds one bench command; 0 means Duration plus a minute.
	Timeout time.Duration
	// DTLS runs it over DTLS: sc-server --dtls, sc-client bench --udp
	// (scenarios_dtls.go).
	DTLS bool
	// MTLS runs it over mutual TLS: sc-server --client-auth require
	// --client-allow, refserver --client-allow, sc-client bench
	// --identity, with the suite's bench identity (scenarios_mtls.go).
	MTLS bool
}

// Scenario IDs the targets refer to.
const (
	hsP256       = "hs-full-p256-tls13"
	hsP256X25519 = "hs-full-p256-tls13-x25519"
	hsP256Resume = "hs-resume-p256-tls13"
	hsRSA        = "hs-full-rsa4096-tls13"
	hsRSAResume  = "hs-resume-rsa4096-tls13"
	hsEd25519    = "hs-full-ed25519-tls13"
	echo50       = "echo-50x64B-tls13"
	echo1        = "echo-1x64B-tls13"
	echo50Plain  = "echo-50x64B-plaintext"
	pipe50       = "pipeline-50x64x64B-tls13"
	pipe50Plain  = "pipeline-50x64x64B-plaintext"
	idle15k64    = "idle-15000x64B-tls13"
	idle15k4096  = "idle-15000x4096B-tls13"
	idle19k      = "idle-19000x64B-tls13"
	scaling      = "scale-1x64B-per-s-tls13"
	smokeScale   = "smoke-scale"
)

// scalingScenario is the scaling run of scripts/bench.sh --scaling: points
// are its connection counts, each measured for d.
func scalingScenario(points string, d time.Duration) scenario {
	return scenario{ID: scaling, Title: "scaling: " + points + " connections, one 64 B ECHO a second each, TLS 1.3", Cert: certP256, Ref: true, Runs: 1,
		// Opening 19,000 connections and measuring six points takes about
		// three minutes on 2 cores.
		Timeout: 15*time.Minute + 6*d,
		Args:    []string{"scale", "--tls", "1.3", "--points", points, "--size", "64", "--interval", "1s", "--settle", "3s", "--duration", d.String()}}
}

// fullScenarios is the matrix of a full run, each scenario timed by d.
func fullScenarios(d time.Duration) []scenario {
	dur := d.String()
	idleTimeout := 5 * time.Minute
	return append([]scenario{
		{ID: hsP256, Title: "full handshakes, TLS 1.3, P-256 cert, default groups (hybrid X25519MLKEM768)", Cert: certP256, Ref: true,
			Args: []string{"handshake", "--tls", "1.3", "--conns", "8", "--duration", dur}},
		{ID: hsP256X25519, Title: "full handshakes, TLS 1.3, P-256 cert, X25519 only", Cert: certP256, Ref: true,
			Args: []string{"handshake", "--tls", "1.3", "--groups", "X25519", "--conns", "8", "--duration", dur}},
		{ID: hsP256Resume, Title: "resumed handshakes, TLS 1.3, P-256 cert", Cert: certP256, Ref: true,
			Args: []string{"handshake", "--tls", "1.3", "--resume", "--conns", "8", "--duration", dur}},
		{ID: "hs-full-p256-tls12", Title: "full handshakes, TLS 1.2, P-256 cert", Cert: certP256, Ref: true,
			Args: []string{"handshake", "--tls", "1.2", "--conns", "8", "--duration", dur}},
		{ID: hsRSA, Title: "full handshakes, TLS 1.3, RSA-4096 cert", Cert: certRSA4096, Ref: true,
			Args: []string{"handshake", "--tls", "1.3", "--conns", "8", "--duration", dur}},
		{ID: hsRSAResume, Title: "resumed handshakes, TLS 1.3, RSA-4096 cert", Cert: certRSA4096, Ref: true,
			Args: []string{"handshake", "--tls", "1.3", "--resume", "--conns", "8", "--duration", dur}},
		{ID: hsEd25519, Title: "full handshakes, TLS 1.3, Ed25519 cert", Cert: certEd25519, Ref: true,
			Args: []string{"handshake", "--tls", "1.3", "--conns", "8", "--duration", dur}},
		{ID: "hs-full-rsa4096-tls12", Title: "full handshakes, TLS 1.2, RSA-4096 cert", Cert: certRSA4096,
			Args: []string{"handshake", "--tls", "1.2", "--conns", "8", "--duration", dur}},
		{ID: echo50, Title: "ECHO 64 B ping-pong, 50 connections, TLS 1.3", Cert: certP256, Ref: true,
			Args: []string{"echo", "--tls", "1.3", "--conns", "50", "--size", "64", "--duration", dur}},
		{ID: echo1, Title: "ECHO 64 B ping-pong, 1 connection, TLS 1.3 (latency)", Cert: certP256, Ref: true,
			Args: []string{"echo", "--tls", "1.3", "--conns", "1", "--size", "64", "--duration", dur}},
		{ID: "echo-50x64B-tls12", Title: "ECHO 64 B ping-pong, 50 connections, TLS 1.2", Cert: certP256,
			Args: []string{"echo", "--tls", "1.2", "--conns", "50", "--size", "64", "--duration", dur}},
		{ID: echo50Plain, Title: "ECHO 64 B ping-pong, 50 connections, plaintext", Cert: certNone, Ref: true,
			Args: []string{"echo", "--conns", "50", "--size", "64", "--duration", dur}},
		{ID: pipe50, Title: "ECHO 64 B, 50 connections × 64 pipelined, TLS 1.3", Cert: certP256, Ref: true,
			Args: []string{"pipeline", "--tls", "1.3", "--conns", "50", "--depth", "64", "--size", "64", "--duration", dur}},
		{ID: "pipeline-50x64x64B-tls12", Title: "ECHO 64 B, 50 connections × 64 pipelined, TLS 1.2", Cert: certP256,
			Args: []string{"pipeline", "--tls", "1.2", "--conns", "50", "--depth", "64", "--size", "64", "--duration", dur}},
		{ID: pipe50Plain, Title: "ECHO 64 B, 50 connections × 64 pipelined, plaintext", Cert: certNone, Ref: true,
			Args: []string{"pipeline", "--conns", "50", "--depth", "64", "--size", "64", "--duration", dur}},
		{ID: idle15k64, Title: "15,000 idle connections after one 64 B ECHO, TLS 1.3", Cert: certP256, Ref: true, Timeout: idleTimeout,
			Args: []string{"idle", "--tls", "1.3", "--conns", "15000", "--size", "64", "--settle", "3s", "--duration", "4s"}},
		{ID: idle15k4096, Title: "15,000 idle connections after one 4096 B ECHO, TLS 1.3", Cert: certP256, Ref: true, Timeout: idleTimeout,
			Args: []string{"idle", "--tls", "1.3", "--conns", "15000", "--size", "4096", "--settle", "3s", "--duration", "4s"}},
		{ID: "idle-15000x64B-plaintext", Title: "15,000 idle connections after one 64 B ECHO, plaintext", Cert: certNone, Timeout: idleTimeout,
			Args: []string{"idle", "--conns", "15000", "--size", "64", "--settle", "3s", "--duration", "4s"}},
		{ID: idle19k, Title: "19,000 concurrent TLS 1.3 connections, each answering an ECHO", Cert: certP256, Runs: 1, Timeout: idleTimeout,
			Args: []string{"idle", "--tls", "1.3", "--conns", "19000", "--size", "64", "--settle", "3s", "--duration", "4s"}},
	}, append(dtlsScenarios(d), mtlsScenarios(d)...)...)
}

// smokeScenarios runs every mode once, in seconds.
func smokeScenarios() []scenario {
	return []scenario{
		{ID: "smoke-handshake", Title: "full handshakes", Cert: certP256, Ref: true,
			Args: []string{"handshake", "--conns", "2", "--count", "20", "--duration", "20s"}},
		{ID: "smoke-resume", Title: "resumed handshakes, TLS 1.2", Cert: certP256, Ref: true,
			Args: []string{"handshake", "--tls", "1.2", "--resume", "--conns", "2", "--count", "20", "--duration", "20s"}},
		{ID: "smoke-echo", Title: "ECHO ping-pong", Cert: certP256, Ref: true,
			Args: []string{"echo", "--conns", "4", "--count", "400", "--duration", "20s"}},
		{ID: "smoke-pipeline", Title: "pipelined ECHO, plaintext", Cert: certNone, Ref: true,
			Args: []string{"pipeline", "--conns", "2", "--depth", "16", "--count", "640", "--duration", "20s"}},
		{ID: "smoke-idle", Title: "idle connections", Cert: certP256, Ref: true,
			Args: []string{"idle", "--conns", "50", "--settle", "200ms", "--duration", "200ms"}},
		{ID: "smoke-dtls-handshake", Title: "full DTLS handshakes", Cert: certP256, DTLS: true,
			Args: []string{"handshake", "--conns", "2", "--count", "20", "--duration", "20s"}},
		{ID: "smoke-dtls-echo", Title: "DTLS ECHO ping-pong", Cert: certP256, DTLS: true,
			Args: []string{"echo", "--conns", "4", "--count", "400", "--duration", "20s"}},
		{ID: "smoke-dtls-idle", Title: "idle DTLS sessions", Cert: certP256, DTLS: true,
			Args: []string{"idle", "--conns", "50", "--settle", "200ms", "--duration", "200ms"}},
		{ID: "smoke-mtls-handshake", Title: "full mutual TLS handshakes, TLS 1.3", Cert: certP256, Ref: true, MTLS: true,
			Args: []string{"handshake", "--tls", "1.3", "--conns", "2", "--count", "20", "--duration", "20s"}},
		{ID: "smoke-mtls-resume", Title: "resumed mutual TLS handshakes, TLS 1.3", Cert: certP256, Ref: true, MTLS: true,
			Args: []string{"handshake", "--tls", "1.3", "--resume", "--conns", "2", "--count", "20", "--duration", "20s"}},
		{ID: "smoke-mtls-idle", Title: "idle mutual TLS connections", Cert: certP256, Ref: true, MTLS: true,
			Args: []string{"idle", "--tls", "1.3", "--conns", "50", "--size", "64", "--settle", "200ms", "--duration", "200ms"}},
		{ID: smokeScale, Title: "scaling", Cert: certP256, Ref: true,
			Args: []string{"scale", "--points", "20,50", "--interval", "100ms", "--settle", "200ms", "--duration", "1s"}},
	}
}
