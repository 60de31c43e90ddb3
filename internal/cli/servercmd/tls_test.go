package servercmd

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// The TLS 1.2 suites are ECDHE with AEAD ciphers only: no CBC, no static
// RSA key exchange.
func TestCipherSuitesAreECDHEAndAEAD(t *testing.T) {
	cfg, err := newTLSConfig(tls.VersionTLS12, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.CipherSuites) == 0 {
		t.Fatal("no explicit suite list: Go's default TLS 1.2 list includes CBC suites")
	}
	for _, id := range cfg.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("suite %s is not ECDHE + AEAD", name)
		}
	}
	if !cfg.DynamicRecordSizingDisabled || len(cfg.Certificates) != 0 || cfg.SessionTicketsDisabled {
		t.Errorf("got DynamicRecordSizingDisabled %v, %d Certificates, SessionTicketsDisabled %v; want true, 0, false",
			cfg.DynamicRecordSizingDisabled, len(cfg.Certificates), cfg.SessionTicketsDisabled)
	}
	if _, err := newTLSConfig(tls.VersionTLS11, nil, nil); err == nil {
		t.Error("a TLS 1.1 minimum was accepted")
	}
}

// Against the running command: TLS 1.2 and 1.3 handshakes succeed and
// resume; TLS 1.1, CBC-only and static-RSA-only clients are refused; with
// --min-tls 1.3, TLS 1.2 is refused.
func TestHandshakes(t *testing.T) {
	l := mustInit(t)
	r := startServer(t, Env{}, layoutArgs(l)...)
	r13 := startServer(t, Env{}, append(layoutArgs(l), "--min-tls", "1.3")...)

	tests := []struct {
		name    string
		addr    string
		min     uint16
		max     uint16
		suites  []uint16
		wantOK  bool
		wantVer uint16
	}{
		{name: "TLS 1.3", addr: r.addr, min: tls.VersionTLS13, max: tls.VersionTLS13, wantOK: true, wantVer: tls.VersionTLS13},
		{name: "TLS 1.2", addr: r.addr, min: tls.VersionTLS12, max: tls.VersionTLS12, wantOK: true, wantVer: tls.VersionTLS12},
		{name: "either prefers 1.3", addr: r.addr, min: tls.VersionTLS12, max: tls.VersionTLS13, wantOK: true, wantVer: tls.VersionTLS13},
		{name: "TLS 1.1", addr: r.addr, min: tls.VersionTLS11, max: tls.VersionTLS11},
		{name: "TLS 1.2 CBC only", addr: r.addr, min: tls.VersionTLS12, max: tls.VersionTLS12,
			suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}},
		{name: "TLS 1.2 RSA key exchange only", addr: r.addr, min: tls.VersionTLS12, max: tls.VersionTLS12,
			suites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384}},
		{name: "min-tls 1.3 refuses 1.2", addr: r13.addr, min: tls.VersionTLS12, max: tls.VersionTLS12},
		{name: "min-tls 1.3 takes 1.3", addr: r13.addr, min: tls.VersionTLS12, max: tls.VersionTLS13, wantOK: true, wantVer: tls.VersionTLS13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := caConfig(t, l, 0)
			cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = tt.min, tt.max, tt.suites
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			state, err := handshake(tt.addr, cfg)
			if !tt.wantOK {
				if err == nil {
					t.Fatalf("handshake succeeded with %s %s, want it refused", tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite))
				}
				// The server refuses (an alert), not the client.
				if !strings.Contains(err.Error(), "remote error") {
					t.Errorf("got %v, want the server's alert", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if state.Version != tt.wantVer {
				t.Errorf("version: got %s, want %s", tls.VersionName(state.Version), tls.VersionName(tt.wantVer))
			}
			// Session resumption is on.
			again, err := handshake(tt.addr, cfg)
			if err != nil || !again.DidResume {
				t.Errorf("second handshake: resumed %v, %v; want a resumed session", again.DidResume, err)
			}
		})
	}
}

// handshake connects, does one ECHO (so a TLS 1.3 ticket is read), and
// returns the connection state.
func handshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer nc.Close()
	tc := nc.(*tls.Conn)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := tc.Write(proto.AppendFrame(nil, proto.Echo, []byte("x"))); err != nil {
		return tls.ConnectionState{}, err
	}
	dec := proto.NewDecoder(tc, proto.DefaultMaxBody)
	if _, err := dec.Next(); err != nil {
		return tls.ConnectionState{}, err
	}
	return tc.ConnectionState(), nil
}

// --groups sets the key-exchange groups: a client offering the default
// list gets the server's first choice, a client offering none of them is
// refused, and a hybrid-only list on a server that accepts TLS 1.2 is
// warned about, because TLS 1.2 cannot negotiate a hybrid.
func TestGroups(t *testing.T) {
	l := mustInit(t)
	x25519 := startServer(t, Env{}, append(layoutArgs(l), "--groups", "X25519,P-256")...)
	hybrid := startServer(t, Env{}, append(layoutArgs(l), "--groups", "X25519MLKEM768")...)

	cfg := caConfig(t, l, 0)
	state, err := handshake(x25519.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if state.CurveID != tls.X25519 {
		t.Errorf("--groups X25519,P-256 with a default client: got %v, want X25519", state.CurveID)
	}
	p384 := caConfig(t, l, 0)
	p384.CurvePreferences = []tls.CurveID{tls.CurveP384}
	if _, err := handshake(x25519.addr, p384); err == nil {
		t.Error("a P-384-only client connected to a server offering X25519 and P-256")
	}

	state, err = handshake(hybrid.addr, caConfig(t, l, 0))
	if err != nil || state.CurveID != tls.X25519MLKEM768 {
		t.Errorf("hybrid-only server, TLS 1.3 client: got %v, %v; want X25519MLKEM768", state.CurveID, err)
	}
	if _, err := handshake(hybrid.addr, caConfig(t, l, tls.VersionTLS12)); err == nil {
		t.Error("a TLS 1.2 client connected to a hybrid-only server")
	}
	if !strings.Contains(hybrid.stderr.String(), "TLS 1.2 clients") {
		t.Errorf("no warning about TLS 1.2 clients in the log:\n%s", hybrid.stderr)
	}
	if strings.Contains(x25519.stderr.String(), "TLS 1.2 clients") {
		t.Errorf("a warning about TLS 1.2 clients for a list with classical groups:\n%s", x25519.stderr)
	}
}

func TestTLSOnlyGroupsWarning(t *testing.T) {
	tests := []struct {
		name   string
		min    uint16
		groups []tls.CurveID
		warn   bool
	}{
		{"default list", tls.VersionTLS12, nil, false},
		{"hybrid only, TLS 1.2 allowed", tls.VersionTLS12, []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768}, true},
		{"hybrid only, TLS 1.3 minimum", tls.VersionTLS13, []tls.CurveID{tls.X25519MLKEM768}, false},
		{"hybrid and classical", tls.VersionTLS12, []tls.CurveID{tls.X25519MLKEM768, tls.X25519}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tlsOnlyGroupsWarning(tt.min, tt.groups) != ""; got != tt.warn {
				t.Errorf("got warning %v, want %v", got, tt.warn)
			}
		})
	}
}
