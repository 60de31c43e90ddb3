package pinning

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// mustTrust makes a Trust. Unless opts has its own Warn, a warning fails
// the test: none is expected.
func mustTrust(t testing.TB, opts TrustOptions) *Trust {
	t.Helper()
	if opts.Warn == nil {
		opts.Warn = func(err error) { t.Errorf("unexpected warning: %v", err) }
	}
	tr, err := NewTrust(opts)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func mustSet(t testing.TB, pins ...Pin) Set {
	t.Helper()
	s, err := NewSet(pins[0], pins[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// connect makes a full connection with tr's config and returns its state.
func connect(t testing.TB, tr *Trust, addr string) (tls.ConnectionState, error) {
	t.Helper()
	return connectWith(t, tr.Config(), addr)
}

func connectWith(t testing.TB, cfg *tls.Config, addr string) (tls.ConnectionState, error) {
	t.Helper()
	c, err := dial(t, addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

// warnings collects what a Trust reports to its Warn callback.
type warnings struct {
	mu   sync.Mutex
	errs []error
}

func (w *warnings) warn(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs = append(w.errs, err)
}

func (w *warnings) list() []error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]error(nil), w.errs...)
}

// watch wraps cfg's VerifyConnection and reports, for each call, whether
// the session was resumed.
func watch(cfg *tls.Config) (*tls.Config, func() []bool) {
	var mu sync.Mutex
	var calls []bool
	inner := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		mu.Lock()
		calls = append(calls, cs.DidResume)
		mu.Unlock()
		if inner == nil {
			return nil
		}
		return inner(cs)
	}
	return cfg, func() []bool {
		mu.Lock()
		defer mu.Unlock()
		return append([]bool(nil), calls...)
	}
}

func TestNewTrustValidation(t *testing.T) {
	pins := mustSet(t, PinOfSPKI([]byte("a")))
	store := mustStore(t, filepath.Join(t.TempDir(), "known_hosts"), nil)
	ask := func(string, Pin, *x509.Certificate) (bool, error) { return true, nil }
	tests := []struct {
		name  string
		opts  TrustOptions
		error string
	}{
		{name: "zero value is ca with system roots", opts: TrustOptions{}},
		{name: "pin", opts: TrustOptions{Mode: ModePin, Pins: pins}},
		{name: "ca+pin", opts: TrustOptions{Mode: ModeCAPin, Pins: pins, Roots: x509.NewCertPool()}},
		{name: "tofu", opts: TrustOptions{Mode: ModeTOFU, Store: store, Host: "h:1"}},
		{name: "tofu prompt", opts: TrustOptions{Mode: ModeTOFU, Store: store, Host: "h:1", TOFU: TOFUPrompt, Prompt: ask}},
		{name: "insecure", opts: TrustOptions{Mode: ModeInsecure}},
		{name: "unknown mode", opts: TrustOptions{Mode: Mode(42)}, error: "unknown mode"},
		{name: "pin without pins", opts: TrustOptions{Mode: ModePin}, error: "needs at least one pin"},
		{name: "ca+pin without pins", opts: TrustOptions{Mode: ModeCAPin}, error: "needs at least one pin"},
		{name: "pins in ca mode", opts: TrustOptions{Pins: pins}, error: "only used in modes pin and ca+pin"},
		{name: "pins in tofu mode", opts: TrustOptions{Mode: ModeTOFU, Store: store, Host: "h:1", Pins: pins}, error: "add them to the store"},
		{name: "roots in pin mode", opts: TrustOptions{Mode: ModePin, Pins: pins, Roots: x509.NewCertPool()}, error: "CA roots"},
		{name: "tofu without store", opts: TrustOptions{Mode: ModeTOFU, Host: "h:1"}, error: "needs a known hosts store"},
		{name: "tofu without host", opts: TrustOptions{Mode: ModeTOFU, Store: store}, error: "HOST:PORT"},
		{name: "bad host", opts: TrustOptions{Mode: ModeTOFU, Store: store, Host: "h"}, error: "want HOST:PORT"},
		{name: "prompt policy without prompt", opts: TrustOptions{Mode: ModeTOFU, Store: store, Host: "h:1", TOFU: TOFUPrompt}, error: "needs a Prompt"},
		{name: "prompt with auto policy", opts: TrustOptions{Mode: ModeTOFU, Store: store, Host: "h:1", Prompt: ask}, error: "never asks"},
		{name: "unknown policy", opts: TrustOptions{Mode: ModeTOFU, Store: store, Host: "h:1", TOFU: 9}, error: "unknown trust-on-first-use policy"},
		{name: "store in pin mode", opts: TrustOptions{Mode: ModePin, Pins: pins, Store: store}, error: "only used in tofu mode"},
		{name: "policy in ca mode", opts: TrustOptions{TOFU: TOFUOff}, error: "only used in tofu mode"},
		{name: "template decides trust", opts: TrustOptions{Config: &tls.Config{InsecureSkipVerify: true}}, error: "leave them to the trust mode"},
		{name: "template verifies peer", opts: TrustOptions{Config: &tls.Config{VerifyPeerCertificate: func([][]byte, [][]*x509.Certificate) error { return nil }}}, error: "leave them"},
		{name: "template with roots", opts: TrustOptions{Config: &tls.Config{RootCAs: x509.NewCertPool()}}, error: "leave them"},
		{name: "template with ECH", opts: TrustOptions{Config: &tls.Config{EncryptedClientHelloConfigList: []byte{0}}}, error: "encrypted client hello"},
		{name: "template server name differs", opts: TrustOptions{Host: "a:1", Config: &tls.Config{ServerName: "b"}}, error: "differs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := NewTrust(tt.opts)
			if tt.error == "" {
				if err != nil || tr == nil {
					t.Fatalf("got %v, want a Trust", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.error) {
				t.Errorf("got error %v, want one containing %q", err, tt.error)
			}
		})
	}
}

func TestParseModeAndPolicy(t *testing.T) {
	for _, m := range []Mode{ModeCA, ModePin, ModeCAPin, ModeTOFU, ModeInsecure} {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMode(%q): got %v, %v, want %v", m.String(), got, err, m)
		}
	}
	for _, p := range []TOFUPolicy{TOFUAuto, TOFUPrompt, TOFUOff} {
		got, err := ParseTOFUPolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParseTOFUPolicy(%q): got %v, %v, want %v", p.String(), got, err, p)
		}
	}
	if _, err := ParseMode("pinned"); err == nil {
		t.Error("ParseMode accepted an unknown name")
	}
	if _, err := ParseTOFUPolicy("yes"); err == nil {
		t.Error("ParseTOFUPolicy accepted an unknown name")
	}
}

// Config returns a fresh config every time; InsecureSkipVerify comes only
// with the verifier, and only in the modes whose anchor is not a CA.
func TestConfig(t *testing.T) {
	pins := mustSet(t, PinOfSPKI([]byte("a")))
	store := mustStore(t, filepath.Join(t.TempDir(), "known_hosts"), nil)
	roots := x509.NewCertPool()
	template := &tls.Config{NextProtos: []string{"sc"}, MinVersion: tls.VersionTLS13}
	tests := []struct {
		opts     TrustOptions
		insecure bool
	}{
		{TrustOptions{Mode: ModeCA, Roots: roots}, false},
		{TrustOptions{Mode: ModeCAPin, Roots: roots, Pins: pins}, false},
		{TrustOptions{Mode: ModePin, Pins: pins}, true},
		{TrustOptions{Mode: ModeTOFU, Store: store}, true},
		{TrustOptions{Mode: ModeInsecure}, true},
	}
	for _, tt := range tests {
		t.Run(tt.opts.Mode.String(), func(t *testing.T) {
			tt.opts.Host = "[::1]:4242"
			tt.opts.Config = template
			tr := mustTrust(t, tt.opts)
			a, b := tr.Config(), tr.Config()
			if a == b {
				t.Fatal("got the same *tls.Config twice, want a fresh one per call")
			}
			if a.InsecureSkipVerify != tt.insecure {
				t.Errorf("InsecureSkipVerify: got %v, want %v", a.InsecureSkipVerify, tt.insecure)
			}
			if a.VerifyConnection == nil {
				t.Error("got no VerifyConnection")
			}
			if a.ServerName != "::1" {
				t.Errorf("ServerName: got %q, want %q", a.ServerName, "::1")
			}
			if (a.RootCAs == roots) == tt.insecure {
				t.Errorf("RootCAs set: got %v, want %v", a.RootCAs == roots, !tt.insecure)
			}
			if a.MinVersion != tls.VersionTLS13 || len(a.NextProtos) != 1 {
				t.Error("the template's settings were not kept")
			}
			a.ServerName = "changed"
			if tr.Config().ServerName != "::1" {
				t.Error("changing a returned config changed the next one")
			}
		})
	}
	if template.InsecureSkipVerify || template.VerifyConnection != nil || template.ServerName != "" {
		t.Error("the template was changed")
	}
	if got := mustTrust(t, TrustOptions{}).Config().MinVersion; got != tls.VersionTLS12 {
		t.Errorf("default MinVersion: got %x, want TLS 1.2", got)
	}
}

func TestPinMode(t *testing.T) {
	ca := mustCA(t)
	key, other := mustKey(t), mustKey(t)
	leaf := ca.issue(t, key, certSpec{})
	pin, otherPin, caPin := PinOf(leaf), mustPinOfKey(t, other), PinOf(ca.cert)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			srv := startServer(t, serverSpec{cert: tlsCert(key, leaf, ca.cert), version: v.v})
			tests := []struct {
				name string
				pins Set
				ok   bool
			}{
				{"current pin", mustSet(t, pin), true},
				{"backup pin", mustSet(t, otherPin, pin), true},
				{"other key", mustSet(t, otherPin), false},
				// Without a verified chain only the leaf's key can be
				// pinned: anyone can send a CA certificate along.
				{"CA key in an unverified chain", mustSet(t, caPin), false},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					tr := mustTrust(t, TrustOptions{Mode: ModePin, Pins: tt.pins, Host: srv.addr})
					_, err := connect(t, tr, srv.addr)
					if tt.ok {
						if err != nil {
							t.Fatal(err)
						}
						return
					}
					var ke *KeyError
					if !errors.As(err, &ke) {
						t.Fatalf("got %v, want a *KeyError", err)
					}
					if !ke.Got.Equal(pin) || ke.Host != srv.addr || ke.Path != "" || len(ke.Want) != tt.pins.Len() || !ke.Want[0].Current {
						t.Errorf("got %+v, want host %s, got %v, the configured pins and no path", ke, srv.addr, pin)
					}
				})
			}
		})
	}
}

func mustPinOfKey(t testing.TB, k crypto.Signer) Pin {
	t.Helper()
	p, err := PinOfPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCAModes(t *testing.T) {
	ca, otherCA := mustCA(t), mustCA(t)
	key := mustKey(t)
	withIP := ca.issue(t, key, certSpec{})
	dnsOnly := ca.issue(t, key, certSpec{dns: []string{"localhost"}})
	selfSigned := mustLeaf(t, key)
	keyPin, caPin := PinOf(withIP), PinOf(ca.cert)
	otherPin := PinOfSPKI([]byte("other"))

	tests := []struct {
		name       string
		chain      []*x509.Certificate
		opts       TrustOptions
		wantErr    string // "", or the kind of error wanted
		serverName string
	}{
		{name: "ca, IP SAN", chain: []*x509.Certificate{withIP}, opts: TrustOptions{Mode: ModeCA, Roots: ca.pool()}},
		{name: "ca, IP dial without IP SAN", chain: []*x509.Certificate{dnsOnly}, opts: TrustOptions{Mode: ModeCA, Roots: ca.pool()}, wantErr: "hostname"},
		{name: "ca, name", chain: []*x509.Certificate{dnsOnly}, opts: TrustOptions{Mode: ModeCA, Roots: ca.pool()}, serverName: "localhost"},
		{name: "ca, other CA", chain: []*x509.Certificate{withIP}, opts: TrustOptions{Mode: ModeCA, Roots: otherCA.pool()}, wantErr: "authority"},
		{name: "ca+pin, CA key pinned", chain: []*x509.Certificate{withIP, ca.cert}, opts: TrustOptions{Mode: ModeCAPin, Roots: ca.pool(), Pins: mustSet(t, caPin)}},
		{name: "ca+pin, leaf key pinned", chain: []*x509.Certificate{withIP}, opts: TrustOptions{Mode: ModeCAPin, Roots: ca.pool(), Pins: mustSet(t, otherPin, keyPin)}},
		{name: "ca+pin, other pin", chain: []*x509.Certificate{withIP}, opts: TrustOptions{Mode: ModeCAPin, Roots: ca.pool(), Pins: mustSet(t, otherPin)}, wantErr: "pin"},
		{name: "ca+pin, pinned but not CA-issued", chain: []*x509.Certificate{selfSigned}, opts: TrustOptions{Mode: ModeCAPin, Roots: ca.pool(), Pins: mustSet(t, keyPin)}, wantErr: "authority"},
	}
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					srv := startServer(t, serverSpec{cert: tlsCert(key, tt.chain...), version: v.v})
					opts := tt.opts
					opts.Host = srv.addr
					opts.ServerName = tt.serverName
					_, err := connect(t, mustTrust(t, opts), srv.addr)
					var (
						he x509.HostnameError
						ue x509.UnknownAuthorityError
						ke *KeyError
					)
					switch {
					case tt.wantErr == "" && err != nil:
						t.Fatal(err)
					case tt.wantErr == "hostname" && !errors.As(err, &he):
						t.Errorf("got %v, want an x509.HostnameError", err)
					case tt.wantErr == "authority" && !errors.As(err, &ue):
						t.Errorf("got %v, want an x509.UnknownAuthorityError", err)
					case tt.wantErr == "pin" && !errors.As(err, &ke):
						t.Errorf("got %v, want a *KeyError", err)
					}
				})
			}
		})
	}
}

func TestInsecureMode(t *testing.T) {
	key := mustKey(t)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			srv := startServer(t, serverSpec{cert: tlsCert(key, mustLeaf(t, key)), version: v.v})
			var w warnings
			tr := mustTrust(t, TrustOptions{Mode: ModeInsecure, Host: srv.addr, Warn: w.warn})
			for range 2 {
				if _, err := connect(t, tr, srv.addr); err != nil {
					t.Fatal(err)
				}
			}
			got := w.list()
			if len(got) != 2 {
				t.Fatalf("got %d warnings, want one per connection: %v", len(got), got)
			}
			for _, err := range got {
				if !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), srv.addr) {
					t.Errorf("got warning %v, want ErrInsecure naming %s", err, srv.addr)
				}
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	key := mustKey(t)
	now := time.Now()
	expired := mustCert(t, certSpec{key: key, ips: []net.IP{net.IPv4(127, 0, 0, 1)}, notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-24 * time.Hour)})
	future := mustCert(t, certSpec{key: key, ips: []net.IP{net.IPv4(127, 0, 0, 1)}, notBefore: now.Add(24 * time.Hour), notAfter: now.Add(48 * time.Hour)})
	pin := PinOf(expired)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			for _, cert := range []*x509.Certificate{expired, future} {
				name := "expired"
				if cert == future {
					name = "not yet valid"
				}
				t.Run(name, func(t *testing.T) {
					srv := startServer(t, serverSpec{cert: tlsCert(key, cert), version: v.v})
					modes := map[string]func(strict bool, w *warnings) TrustOptions{
						"pin": func(strict bool, w *warnings) TrustOptions {
							return TrustOptions{Mode: ModePin, Pins: mustSet(t, pin), StrictExpiry: strict, Warn: w.warn}
						},
						"tofu": func(strict bool, w *warnings) TrustOptions {
							store := mustStore(t, filepath.Join(t.TempDir(), "known_hosts"), nil)
							return TrustOptions{Mode: ModeTOFU, Store: store, StrictExpiry: strict, Warn: w.warn}
						},
					}
					for mode, mk := range modes {
						t.Run(mode, func(t *testing.T) {
							var w warnings
							opts := mk(false, &w)
							opts.Host = srv.addr
							if _, err := connect(t, mustTrust(t, opts), srv.addr); err != nil {
								t.Fatalf("default: got %v, want a warning only", err)
							}
							var ve *ValidityError
							if got := w.list(); len(got) != 1 || !errors.As(got[0], &ve) || !ve.Pin.Equal(pin) {
								t.Errorf("default: got warnings %v, want one *ValidityError", got)
							}

							var strictW warnings
							opts = mk(true, &strictW)
							opts.Host = srv.addr
							_, err := connect(t, mustTrust(t, opts), srv.addr)
							if !errors.As(err, &ve) {
								t.Errorf("strict: got %v, want a *ValidityError", err)
							}
							if len(strictW.list()) != 0 {
								t.Errorf("strict: got warnings %v, want the error only", strictW.list())
							}
						})
					}
				})
			}
		})
	}
}

func TestTOFUFirstUse(t *testing.T) {
	key := mustKey(t)
	leaf := mustLeaf(t, key)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			srv := startServer(t, serverSpec{cert: tlsCert(key, leaf), version: v.v})
			clock := newClock()
			path := filepath.Join(t.TempDir(), "known_hosts")
			store := mustStore(t, path, clock.Now)
			tr := mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: store, Host: srv.addr, Now: clock.Now})

			// The file is looked at inside VerifyConnection: nothing may be
			// there while the handshake runs.
			cfg := tr.Config()
			inner := cfg.VerifyConnection
			var during []string
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				err := inner(cs)
				during = append(during, mustRead(t, path))
				return err
			}
			state, err := connectWith(t, cfg, srv.addr)
			if err != nil {
				t.Fatal(err)
			}
			if len(during) != 1 || during[0] != "" {
				t.Errorf("store during the handshake: got %q, want no file", during)
			}
			if got := mustRead(t, path); got != "" {
				t.Errorf("store after the handshake, before Record: got %q, want no file", got)
			}
			rec, err := tr.Record(state)
			if err != nil {
				t.Fatal(err)
			}
			checkRecorded(t, rec, Recorded{FirstUse: true})
			e := mustLookup(t, store, srv.addr)
			cur, ok := e.Current()
			if len(e.Pins) != 1 || !ok || !cur.Pin.Equal(PinOf(leaf)) || cur.Origin != OriginFirstUse ||
				!cur.FirstSeen.Equal(clock.Now()) || !cur.LastSeen.Equal(clock.Now()) {
				t.Errorf("got entry %v, want the leaf's pin, current, first use, seen now", e)
			}
		})
	}
}

func TestTOFUSameKeyAndRenewal(t *testing.T) {
	key := mustKey(t)
	leaf := mustLeaf(t, key)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			srv := startServer(t, serverSpec{cert: tlsCert(key, leaf), version: v.v})
			clock := newClock()
			path := filepath.Join(t.TempDir(), "known_hosts")
			store := mustStore(t, path, clock.Now)
			tr := mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: store, Host: srv.addr, Now: clock.Now})
			mustConnectAndRecord(t, tr, srv.addr)
			first := mustRead(t, path)

			// The same key again, within the last-seen resolution: accepted,
			// and the file is not rewritten.
			clock.Advance(lastSeenResolution / 2)
			_, rec := mustConnectAndRecordWhat(t, tr, srv.addr)
			checkRecorded(t, rec, Recorded{})
			if got := mustRead(t, path); got != first {
				t.Errorf("file rewritten within the last-seen resolution:\n%s", got)
			}

			// A keep-key renewal: a new certificate on the same key.
			clock.Advance(2 * time.Hour)
			renewed := mustCert(t, certSpec{key: key, ips: []net.IP{net.IPv4(127, 0, 0, 1)}, notAfter: time.Now().Add(90 * 24 * time.Hour)})
			if renewed.Equal(leaf) {
				t.Fatal("the renewal is the same certificate")
			}
			srv.setCert(tlsCert(key, renewed))
			_, rec = mustConnectAndRecordWhat(t, tr, srv.addr)
			checkRecorded(t, rec, Recorded{})
			e := mustLookup(t, store, srv.addr)
			cur, _ := e.Current()
			if len(e.Pins) != 1 || !cur.LastSeen.Equal(clock.Now()) || cur.FirstSeen.Equal(clock.Now()) {
				t.Errorf("got %v, want one pin, first seen earlier and last seen now", e)
			}
		})
	}
}

func mustConnectAndRecord(t testing.TB, tr *Trust, addr string) tls.ConnectionState {
	t.Helper()
	state, _ := mustConnectAndRecordWhat(t, tr, addr)
	return state
}

func mustConnectAndRecordWhat(t testing.TB, tr *Trust, addr string) (tls.ConnectionState, Recorded) {
	t.Helper()
	state, err := connect(t, tr, addr)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := tr.Record(state)
	if err != nil {
		t.Fatal(err)
	}
	return state, rec
}

// checkRecorded compares what Record or RecordAnnounced reported.
func checkRecorded(t testing.TB, got, want Recorded) {
	t.Helper()
	if got.FirstUse != want.FirstUse || got.Promoted != want.Promoted || !samePins(got.Added, want.Added) || !samePins(got.Dropped, want.Dropped) {
		t.Errorf("recorded: got %+v, want %+v", got, want)
	}
}

func samePins(a, b []Pin) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func TestTOFUChangedKey(t *testing.T) {
	key, newKey := mustKey(t), mustKey(t)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			srv := startServer(t, serverSpec{cert: tlsCert(key, mustLeaf(t, key)), version: v.v})
			path := filepath.Join(t.TempDir(), "my hosts")
			store := mustStore(t, path, nil)
			tr := mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: store, Host: srv.addr})
			mustConnectAndRecord(t, tr, srv.addr)
			before := mustRead(t, path)

			srv.setCert(tlsCert(newKey, mustLeaf(t, newKey)))
			_, err := connect(t, tr, srv.addr)
			var ke *KeyError
			if !errors.As(err, &ke) {
				t.Fatalf("got %v, want a *KeyError", err)
			}
			oldPin, newPin := mustPinOfKey(t, key), mustPinOfKey(t, newKey)
			if ke.Host != srv.addr || !ke.Got.Equal(newPin) || len(ke.Want) != 1 || !ke.Want[0].Pin.Equal(oldPin) || ke.Path != path || ke.Line != 5 {
				t.Errorf("got %+v, want host %s, got the new pin, want the old one, at %s:5", ke, srv.addr, path)
			}
			for _, sub := range []string{srv.addr, oldPin.String(), newPin.String(), path} {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("message does not mention %q:\n%s", sub, err)
				}
			}
			if got := mustRead(t, path); got != before {
				t.Errorf("the store changed:\n%s\nwant\n%s", got, before)
			}
			// A handshake that failed recorded nothing, and neither does a
			// Record of a state that did not come from a verified connection.
			if _, err := tr.Record(tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{mustLeaf(t, newKey)}}); !errors.As(err, &ke) {
				t.Errorf("Record of the new key: got %v, want a *KeyError", err)
			}
			if got := mustRead(t, path); got != before {
				t.Errorf("the store changed after Record:\n%s", got)
			}
		})
	}
}

// Nothing is written before the handshake has completed: a server that
// shows a certificate whose key it does not hold (an impostor replaying a
// public certificate) gets past VerifyConnection, then fails the
// handshake, and nothing is recorded.
func TestTOFUNothingRecordedWhenHandshakeFailsAfterVerify(t *testing.T) {
	realKey, impostorKey := mustKey(t), mustKey(t)
	realCert := mustLeaf(t, realKey)
	type scenario struct {
		name    string
		spec    serverSpec
		version uint16
	}
	var scenarios []scenario
	for _, v := range versions {
		scenarios = append(scenarios, scenario{"impostor without the key/" + v.name, serverSpec{cert: tlsCert(impostorKey, realCert), version: v.v}, v.v})
	}
	// Under TLS 1.2 the server checks the client's certificate before its
	// Finished, so the client's handshake fails; under TLS 1.3 the client's
	// side completes first (the server has proved its key by then).
	scenarios = append(scenarios, scenario{"server aborts for a missing client certificate/TLS1.2",
		serverSpec{cert: tlsCert(realKey, realCert), version: tls.VersionTLS12, clientAuth: tls.RequireAnyClientCert}, tls.VersionTLS12})

	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			srv := startServer(t, sc.spec)
			for _, known := range []bool{false, true} {
				path := filepath.Join(t.TempDir(), "known_hosts")
				store := mustStore(t, path, nil)
				if known {
					if err := store.Add(srv.addr, PinOf(realCert)); err != nil {
						t.Fatal(err)
					}
				}
				before := mustRead(t, path)
				tr := mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: store, Host: srv.addr})
				cfg, calls := watch(tr.Config())
				raw, err := net.Dial("tcp", srv.addr)
				if err != nil {
					t.Fatal(err)
				}
				conn := tls.Client(raw, cfg)
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				err = conn.Handshake()
				state := conn.ConnectionState()
				conn.Close()
				if err == nil {
					t.Fatal("the handshake succeeded")
				}
				if len(calls()) != 1 {
					t.Fatalf("VerifyConnection ran %d times, want once, before the failure", len(calls()))
				}
				if !errors.Is(second(tr.Record(state)), ErrHandshakeIncomplete) {
					t.Error("Record of a failed handshake: want ErrHandshakeIncomplete")
				}
				if !errors.Is(second(tr.RecordAnnounced(state, PinOf(realCert), nil)), ErrHandshakeIncomplete) {
					t.Error("RecordAnnounced of a failed handshake: want ErrHandshakeIncomplete")
				}
				if got := mustRead(t, path); got != before {
					t.Errorf("known=%v: the store changed:\n%s", known, got)
				}
			}
		})
	}
}

func TestTOFUPolicies(t *testing.T) {
	key := mustKey(t)
	leaf := mustLeaf(t, key)
	pin := PinOf(leaf)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			srv := startServer(t, serverSpec{cert: tlsCert(key, leaf), version: v.v})

			t.Run("off", func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "known_hosts")
				store := mustStore(t, path, nil)
				tr := mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: store, Host: srv.addr, TOFU: TOFUOff})
				_, err := connect(t, tr, srv.addr)
				var ue *UnknownHostError
				if !errors.As(err, &ue) || ue.Declined || !ue.Got.Equal(pin) || ue.Host != srv.addr || ue.Path != path {
					t.Fatalf("got %v, want an *UnknownHostError for %s", err, srv.addr)
				}
				for _, sub := range []string{srv.addr, path, pin.String()} {
					if !strings.Contains(err.Error(), sub) {
						t.Errorf("message does not mention %q:\n%s", sub, err)
					}
				}
				if mustRead(t, path) != "" {
					t.Error("the store was written")
				}
				// A Record after all is refused too.
				if _, err := tr.Record(tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{leaf}}); !errors.As(err, &ue) {
					t.Errorf("Record: got %v, want an *UnknownHostError", err)
				}
				if err := store.Add(srv.addr, pin); err != nil {
					t.Fatal(err)
				}
				mustConnectAndRecord(t, tr, srv.addr)
			})

			t.Run("prompt", func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "known_hosts")
				store := mustStore(t, path, nil)
				answer := false
				var asked []string
				prompt := func(host string, p Pin, l *x509.Certificate) (bool, error) {
					if !p.Equal(pin) || !l.Equal(leaf) {
						t.Errorf("prompt got pin %v and another certificate, want %v and the leaf", p, pin)
					}
					asked = append(asked, host)
					return answer, nil
				}
				tr := mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: store, Host: srv.addr, TOFU: TOFUPrompt, Prompt: prompt})
				_, err := connect(t, tr, srv.addr)
				var ue *UnknownHostError
				if !errors.As(err, &ue) || !ue.Declined {
					t.Fatalf("declined: got %v, want a declined *UnknownHostError", err)
				}
				if mustRead(t, path) != "" {
					t.Error("declined: the store was written")
				}
				answer = true
				mustConnectAndRecord(t, tr, srv.addr)
				mustLookup(t, store, srv.addr)
				mustConnectAndRecord(t, tr, srv.addr)
				if len(asked) != 2 || asked[0] != srv.addr {
					t.Errorf("asked about %v, want %s twice (declined, then accepted), then no more", asked, srv.addr)
				}

				// A key the prompt never approved is not recorded by Record.
				other := mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: mustStore(t, filepath.Join(t.TempDir(), "kh"), nil), Host: srv.addr, TOFU: TOFUPrompt, Prompt: prompt})
				if _, err := other.Record(tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{leaf}}); !errors.As(err, &ue) {
					t.Errorf("Record without approval: got %v, want an *UnknownHostError", err)
				}
			})

			t.Run("prompt error", func(t *testing.T) {
				store := mustStore(t, filepath.Join(t.TempDir(), "known_hosts"), nil)
				errNoTTY := errors.New("no terminal")
				tr := mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: store, Host: srv.addr, TOFU: TOFUPrompt,
					Prompt: func(string, Pin, *x509.Certificate) (bool, error) { return false, errNoTTY }})
				if _, err := connect(t, tr, srv.addr); !errors.Is(err, errNoTTY) {
					t.Errorf("got %v, want the prompt's error", err)
				}
			})
		})
	}
}

// Record checks the store again under its lock: a different key recorded
// for the host by someone else since the handshake is a *KeyError, not an
// overwrite.
func TestRecordRechecksTheStore(t *testing.T) {
	key := mustKey(t)
	srv := startServer(t, serverSpec{cert: tlsCert(key, mustLeaf(t, key)), version: tls.VersionTLS13})
	path := filepath.Join(t.TempDir(), "known_hosts")
	store := mustStore(t, path, nil)
	tr := mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: store, Host: srv.addr})
	state, err := connect(t, tr, srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Add(srv.addr, PinOfSPKI([]byte("someone else's key"))); err != nil {
		t.Fatal(err)
	}
	before := mustRead(t, path)
	var ke *KeyError
	if _, err := tr.Record(state); !errors.As(err, &ke) {
		t.Errorf("got %v, want a *KeyError", err)
	}
	if mustRead(t, path) != before {
		t.Error("the store changed")
	}
}

func TestTOFUCorruptLineFailsClosed(t *testing.T) {
	key := mustKey(t)
	srv := startServer(t, serverSpec{cert: tlsCert(key, mustLeaf(t, key)), version: tls.VersionTLS13})
	path := filepath.Join(t.TempDir(), "known_hosts")
	content := "# hosts\n" + srv.addr + " current=" + mustPinOfKey(t, key).String() + ";first=last-tuesday\n"
	mustWrite(t, path, content)
	store := mustStore(t, path, nil)
	tr := mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: store, Host: srv.addr})
	_, err := connect(t, tr, srv.addr)
	var le *LineError
	if !errors.As(err, &le) || le.Line != 2 {
		t.Fatalf("got %v, want a *LineError for line 2", err)
	}
	if mustRead(t, path) != content {
		t.Error("the store changed")
	}
	// The same server under another name is a different host, unaffected.
	_, port, _ := net.SplitHostPort(srv.addr)
	other := mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: store, Host: "localhost:" + port})
	mustConnectAndRecord(t, other, srv.addr)
	if got := mustRead(t, path); !strings.HasPrefix(got, content) {
		t.Errorf("the corrupt line was not kept:\n%s", got)
	}
}

// A key rollover (sc-cert rotate --promote-next) locks out no client that
// was told about the next key: a TOFU client that connected once before it
// and recorded the server's announcement, and a pin-mode client holding the
// next pin. Clients that were not told are refused.
func TestRollover(t *testing.T) {
	keyA, keyB, keyC := mustKey(t), mustKey(t), mustKey(t)
	certA, certB := mustLeaf(t, keyA), mustLeaf(t, keyB)
	pinA, pinB, pinC := PinOf(certA), PinOf(certB), mustPinOfKey(t, keyC)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			srv := startServer(t, serverSpec{cert: tlsCert(keyA, certA), version: v.v})
			clock := newClock()
			newTOFU := func() (*Trust, *Store, string) {
				path := filepath.Join(t.TempDir(), "known_hosts")
				store := mustStore(t, path, clock.Now)
				return mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: store, Host: srv.addr, Now: clock.Now}), store, path
			}
			told, toldStore, _ := newTOFU()
			untold, _, untoldPath := newTOFU()
			withNext := mustTrust(t, TrustOptions{Mode: ModePin, Pins: mustSet(t, pinA, pinB), Host: srv.addr})
			withoutNext := mustTrust(t, TrustOptions{Mode: ModePin, Pins: mustSet(t, pinA), Host: srv.addr})

			// Before the rollover: the server announces current A, next B.
			state := mustConnectAndRecord(t, told, srv.addr)
			rec, err := told.RecordAnnounced(state, pinA, []Pin{pinB})
			if err != nil {
				t.Fatal(err)
			}
			checkRecorded(t, rec, Recorded{Added: []Pin{pinB}})
			e := mustLookup(t, toldStore, srv.addr)
			if !e.Set().Equal(mustSet(t, pinA, pinB)) || e.Pins[1].Origin != OriginAnnounced || !e.Pins[1].LastSeen.IsZero() {
				t.Fatalf("after the announcement: got %v, want A current and B an announced backup", e)
			}
			mustConnectAndRecord(t, untold, srv.addr)
			for _, tr := range []*Trust{withNext, withoutNext} {
				if _, err := connect(t, tr, srv.addr); err != nil {
					t.Fatal(err)
				}
			}

			// The operator promotes the next key, hours later: well inside
			// the leaves' 24 hours, which started before the clock did
			// (a day would cross their end whenever a second boundary
			// passed in between).
			clock.Advance(12 * time.Hour)
			srv.setCert(tlsCert(keyB, certB))

			state, rec = mustConnectAndRecordWhat(t, told, srv.addr)
			checkRecorded(t, rec, Recorded{Promoted: true})
			e = mustLookup(t, toldStore, srv.addr)
			if cur, _ := e.Current(); !cur.Pin.Equal(pinB) || !cur.LastSeen.Equal(clock.Now()) || !e.Set().Equal(mustSet(t, pinB, pinA)) {
				t.Errorf("after the first handshake with B: got %v, want B current and A kept as a backup", e)
			}
			// The server now announces current B, next C: A is retired.
			rec, err = told.RecordAnnounced(state, pinB, []Pin{pinC})
			if err != nil {
				t.Fatal(err)
			}
			checkRecorded(t, rec, Recorded{Added: []Pin{pinC}, Dropped: []Pin{pinA}})
			e = mustLookup(t, toldStore, srv.addr)
			if !e.Set().Equal(mustSet(t, pinB, pinC)) {
				t.Errorf("after the announcement: got %v, want B current and C the backup, A dropped", e)
			}

			if _, err := connect(t, withNext, srv.addr); err != nil {
				t.Errorf("pin client holding the next pin: %v", err)
			}
			var ke *KeyError
			if _, err := connect(t, withoutNext, srv.addr); !errors.As(err, &ke) {
				t.Errorf("pin client without the next pin: got %v, want a *KeyError", err)
			}
			before := mustRead(t, untoldPath)
			if _, err := connect(t, untold, srv.addr); !errors.As(err, &ke) {
				t.Errorf("TOFU client that never heard of B: got %v, want a *KeyError", err)
			}
			if mustRead(t, untoldPath) != before {
				t.Error("the refused TOFU client's store changed")
			}

			// The retired key is no longer trusted by the client that was told.
			srv.setCert(tlsCert(keyA, certA))
			if _, err := connect(t, told, srv.addr); !errors.As(err, &ke) {
				t.Errorf("retired key A: got %v, want a *KeyError", err)
			}
		})
	}
}

// An announcement keeps pins a person added and replaces only learned ones;
// one that does not fit the presented key changes nothing.
func TestRecordAnnounced(t *testing.T) {
	key := mustKey(t)
	leaf := mustLeaf(t, key)
	pin := PinOf(leaf)
	added, learned, next := PinOfSPKI([]byte("added")), PinOfSPKI([]byte("learned")), PinOfSPKI([]byte("next"))
	srv := startServer(t, serverSpec{cert: tlsCert(key, leaf), version: tls.VersionTLS13})
	path := filepath.Join(t.TempDir(), "known_hosts")
	store := mustStore(t, path, nil)
	tr := mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: store, Host: srv.addr})
	state := mustConnectAndRecord(t, tr, srv.addr)
	if _, err := tr.RecordAnnounced(state, pin, []Pin{learned}); err != nil {
		t.Fatal(err)
	}
	if err := store.Add(srv.addr, added); err != nil {
		t.Fatal(err)
	}
	rec, err := tr.RecordAnnounced(state, pin, []Pin{next, pin, next})
	if err != nil {
		t.Fatal(err)
	}
	checkRecorded(t, rec, Recorded{Added: []Pin{next}, Dropped: []Pin{learned}})
	e := mustLookup(t, store, srv.addr)
	if !e.Set().Equal(mustSet(t, pin, next, added)) {
		t.Errorf("got %v, want the current pin, the announced next pin and the added pin", e)
	}

	before := mustRead(t, path)
	tooMany := make([]Pin, MaxAnnouncedPins+1)
	for i := range tooMany {
		tooMany[i] = PinOfSPKI([]byte{byte(i)})
	}
	for _, tt := range []struct {
		name    string
		current Pin
		next    []Pin
	}{
		{"current is not the presented key", next, nil},
		{"zero current", Pin{}, nil},
		{"too many next pins", pin, tooMany},
		{"zero next pin", pin, []Pin{{}}},
	} {
		if _, err := tr.RecordAnnounced(state, tt.current, tt.next); !errors.Is(err, ErrBadAnnouncement) {
			t.Errorf("%s: got %v, want ErrBadAnnouncement", tt.name, err)
		}
	}
	if mustRead(t, path) != before {
		t.Error("a refused announcement changed the store")
	}

	// Outside tofu mode both calls do nothing.
	pinTrust := mustTrust(t, TrustOptions{Mode: ModePin, Pins: mustSet(t, pin)})
	if _, err := pinTrust.Record(tls.ConnectionState{}); err != nil {
		t.Errorf("Record in pin mode: %v", err)
	}
	if _, err := pinTrust.RecordAnnounced(tls.ConnectionState{}, pin, nil); err != nil {
		t.Errorf("RecordAnnounced in pin mode: %v", err)
	}
}

// Issue 4: a client whose cached session was made under pin A, reconfigured
// to accept only pin B, is refused on resumption. VerifyConnection runs on
// the resumed handshake; a check in VerifyPeerCertificate would not have.
func TestResumptionRechecksPins(t *testing.T) {
	key := mustKey(t)
	leaf := mustLeaf(t, key)
	pinA, pinB := PinOf(leaf), PinOfSPKI([]byte("B"))
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			srv := startServer(t, serverSpec{cert: tlsCert(key, leaf), version: v.v})
			pinTrust := func(s Set) TrustOptions { return TrustOptions{Mode: ModePin, Pins: s} }
			tofuTrust := func(s Set) TrustOptions {
				store := mustStore(t, filepath.Join(t.TempDir(), "known_hosts"), nil)
				if err := store.Add(srv.addr, s.Current()); err != nil {
					t.Fatal(err)
				}
				return TrustOptions{Mode: ModeTOFU, Store: store}
			}
			for name, mk := range map[string]func(Set) TrustOptions{"pin": pinTrust, "tofu": tofuTrust} {
				t.Run(name, func(t *testing.T) {
					cache := tls.NewLRUClientSessionCache(8)
					template := &tls.Config{ClientSessionCache: cache}
					trustWith := func(s Set) *Trust {
						opts := mk(s)
						opts.Host, opts.Config = srv.addr, template
						return mustTrust(t, opts)
					}
					a := trustWith(mustSet(t, pinA))
					if st, err := connect(t, a, srv.addr); err != nil || st.DidResume {
						t.Fatalf("first connection: resumed %v, %v, want a full handshake", st.DidResume, err)
					}
					// Control: the cache works, the session resumes under A.
					cfg, calls := watch(a.Config())
					if st, err := connectWith(t, cfg, srv.addr); err != nil || !st.DidResume {
						t.Fatalf("second connection under A: resumed %v, %v, want resumed", st.DidResume, err)
					}
					if got := calls(); len(got) != 1 || !got[0] {
						t.Fatalf("VerifyConnection calls (resumed?): got %v, want [true]", got)
					}

					// Reconfigured to accept only B: the resumed session is
					// checked and refused.
					b := trustWith(mustSet(t, pinB))
					cfg, calls = watch(b.Config())
					_, err := connectWith(t, cfg, srv.addr)
					var ke *KeyError
					if !errors.As(err, &ke) || !ke.Got.Equal(pinA) {
						t.Fatalf("resumption under B: got %v, want a *KeyError for pin A", err)
					}
					if got := calls(); len(got) != 1 || !got[0] {
						t.Errorf("VerifyConnection calls (resumed?): got %v, want [true]: the refusal must be on resumption", got)
					}
				})
			}

			// Why VerifyConnection: the same check in VerifyPeerCertificate
			// is skipped on resumption, and the connection goes through.
			cache := tls.NewLRUClientSessionCache(8)
			a := mustTrust(t, TrustOptions{Mode: ModePin, Pins: mustSet(t, pinA), Host: srv.addr, Config: &tls.Config{ClientSessionCache: cache}})
			if _, err := connect(t, a, srv.addr); err != nil {
				t.Fatal(err)
			}
			weak := a.Config()
			weak.VerifyConnection = nil
			weak.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
				return errors.New("only pin B is accepted")
			}
			if st, err := connectWith(t, weak, srv.addr); err != nil || !st.DidResume {
				t.Errorf("VerifyPeerCertificate control: got resumed %v, %v; want the resumed session to slip through, showing why pins live in VerifyConnection", st.DidResume, err)
			}
		})
	}
}

// second returns the error of a (Recorded, error) pair.
func second(_ Recorded, err error) error { return err }
