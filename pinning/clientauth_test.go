package pinning

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// clientFiles are a verifier's files in a temporary directory.
type clientFiles struct {
	dir, ca, allow, revoked string
}

func mustClientFiles(t *testing.T, ca *testCA, allow, revoked string) clientFiles {
	t.Helper()
	dir := t.TempDir()
	f := clientFiles{dir: dir, allow: filepath.Join(dir, "clients.allow"), revoked: filepath.Join(dir, "clients.revoked")}
	if ca != nil {
		f.ca = filepath.Join(dir, "client-ca.crt")
		mustWriteFile(t, f.ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))
	}
	mustWriteFile(t, f.allow, []byte(allow))
	mustWriteFile(t, f.revoked, []byte(revoked))
	return f
}

func mustWriteFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func mustVerifier(t *testing.T, mode ClientAuth, f clientFiles) *ClientVerifier {
	t.Helper()
	v, err := NewClientVerifier(ClientVerifierOptions{Mode: mode, CAFile: f.ca, AllowFile: f.allow, RevokedFile: f.revoked, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// refusal returns the reason a server-side handshake error carries, ""
// for none.
func refusal(err error) string {
	var ce *ClientError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

// Every way a client is admitted or refused, over real TLS on loopback,
// TLS 1.2 and 1.3: the server's handshake error names the reason.
func TestClientVerifierAdmission(t *testing.T) {
	serverKey := mustKey(t)
	serverCert := mustLeaf(t, serverKey)
	clientCA := mustCA(t)
	serverCA := mustCA(t)

	allowedKey := mustKey(t)
	allowed := mustCert(t, certSpec{key: allowedKey, cn: "ignored", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	revokedKey := mustKey(t)
	revoked := mustCert(t, certSpec{key: revokedKey, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	strangerKey := mustKey(t)
	stranger := mustCert(t, certSpec{key: strangerKey, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	playerKey := mustKey(t)
	player := clientCA.issue(t, playerKey, certSpec{cn: "bob\nnext sha256//evil", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	// A server certificate from the client CA: serverAuth only.
	srvLikeKey := mustKey(t)
	srvLike := clientCA.issue(t, srvLikeKey, certSpec{})
	// The server CA's own server certificate.
	otherSrvKey := mustKey(t)
	otherSrv := serverCA.issue(t, otherSrvKey, certSpec{})
	expiredKey := mustKey(t)
	expired := clientCA.issue(t, expiredKey, certSpec{notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-time.Hour), eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	serialKey := mustKey(t)
	serialRevoked := clientCA.issue(t, serialKey, certSpec{cn: "carol", eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})

	allow := fmt.Sprintf("# players\n%v name=alice alice's laptop\n%v name=mallory\n", PinOf(allowed), PinOf(revoked))
	revokedList := fmt.Sprintf("%v # lost laptop\nserial=%x issuer=%v\n", PinOf(revoked), serialRevoked.SerialNumber, PinOf(clientCA.cert))

	tests := []struct {
		name     string
		mode     ClientAuth
		cert     *tls.Certificate
		want     string // "" admitted
		wantName string
	}{
		{"allow list", ClientAuthRequire, ptr(tlsCert(allowedKey, allowed)), "", "alice"},
		{"client CA", ClientAuthRequire, ptr(tlsCert(playerKey, player, clientCA.cert)), "", "bob_next_sha256__evil"},
		{"revoked pin wins over the allow list", ClientAuthRequire, ptr(tlsCert(revokedKey, revoked)), RefusedClientRevoked, ""},
		{"revoked serial", ClientAuthRequire, ptr(tlsCert(serialKey, serialRevoked)), RefusedClientRevoked, ""},
		{"unknown key", ClientAuthRequire, ptr(tlsCert(strangerKey, stranger)), RefusedUnknownClient, ""},
		{"server certificate of the client CA", ClientAuthRequire, ptr(tlsCert(srvLikeKey, srvLike)), RefusedBadClientChain, ""},
		{"server certificate of the server CA", ClientAuthRequire, ptr(tlsCert(otherSrvKey, otherSrv)), RefusedUnknownClient, ""},
		{"expired", ClientAuthRequire, ptr(tlsCert(expiredKey, expired)), RefusedClientCertExpired, ""},
		{"no certificate, require", ClientAuthRequire, nil, RefusedNoClientCert, ""},
		{"no certificate, optional", ClientAuthOptional, nil, "", ""},
		{"unknown key, optional", ClientAuthOptional, ptr(tlsCert(strangerKey, stranger)), RefusedUnknownClient, ""},
	}
	for _, ver := range versions {
		for _, tt := range tests {
			t.Run(ver.name+"/"+tt.name, func(t *testing.T) {
				v := mustVerifier(t, tt.mode, mustClientFiles(t, clientCA, allow, revokedList))
				srv := startServer(t, serverSpec{cert: tlsCert(serverKey, serverCert), version: ver.v, clientAuth: tls.RequestClientCert, verify: v.VerifyConnection})
				cfg := &tls.Config{RootCAs: poolOf(serverCert), ServerName: "localhost", MinVersion: ver.v, MaxVersion: ver.v}
				if tt.cert != nil {
					c := *tt.cert
					cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
				}
				tc, cerr := dial(t, srv.addr, cfg)
				res := <-srv.done
				if got := refusal(res.err); got != tt.want {
					t.Fatalf("got refusal %q, want %q", got, tt.want)
				}
				if tt.want != "" {
					if cerr == nil {
						t.Fatal("the client was served")
					}
					return
				}
				if cerr != nil {
					t.Fatalf("client: %v", cerr)
				}
				_ = tc
				id := v.Identify(res.state)
				if id.Name != tt.wantName {
					t.Errorf("got name %q, want %q", id.Name, tt.wantName)
				}
				if tt.cert == nil {
					if !id.IsZero() {
						t.Errorf("an anonymous client got identity %v", id.Pin)
					}
				} else if want := PinOf(tt.cert.Leaf); !id.Pin.Equal(want) {
					t.Errorf("got pin %v, want %v", id.Pin, want)
				}
			})
		}
	}
}

func ptr[T any](v T) *T { return &v }

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// logBuffer collects log output, for tests that read it, and passes it on
// to t.Log.
type logBuffer struct {
	t  testing.TB
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(&logBuffer{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// A revoked client cannot resume a session it made before its
// revocation: VerifyConnection runs on resumed sessions too (TLS 1.2
// session tickets and TLS 1.3 PSK).
func TestClientVerifierRevokedCannotResume(t *testing.T) {
	serverKey := mustKey(t)
	serverCert := mustLeaf(t, serverKey)
	key := mustKey(t)
	cert := mustCert(t, certSpec{key: key, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			f := mustClientFiles(t, nil, PinOf(cert).String()+" name=dave\n", "")
			v := mustVerifier(t, ClientAuthRequire, f)
			srv := startServer(t, serverSpec{cert: tlsCert(serverKey, serverCert), version: ver.v, clientAuth: tls.RequestClientCert, verify: v.VerifyConnection})
			c := tlsCert(key, cert)
			cfg := &tls.Config{RootCAs: poolOf(serverCert), ServerName: "localhost", MinVersion: ver.v, MaxVersion: ver.v,
				ClientSessionCache:   tls.NewLRUClientSessionCache(4),
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }}
			for i, wantResumed := range []bool{false, true} {
				if _, err := dial(t, srv.addr, cfg); err != nil {
					t.Fatalf("dial %d: %v", i+1, err)
				}
				if res := <-srv.done; res.err != nil || res.resumed != wantResumed {
					t.Fatalf("dial %d: got err %v resumed %v, want resumed %v", i+1, res.err, res.resumed, wantResumed)
				}
			}
			mustWriteFile(t, f.revoked, []byte(PinOf(cert).String()+"\n"))
			if err := v.Reload(); err != nil {
				t.Fatal(err)
			}
			if _, err := dial(t, srv.addr, cfg); err == nil {
				t.Fatal("a revoked client was served")
			}
			res := <-srv.done
			if got := refusal(res.err); got != RefusedClientRevoked {
				t.Fatalf("got %q, want %q", got, RefusedClientRevoked)
			}
			// The refused handshake was a resumption: VerifyConnection,
			// not a full handshake, turned the session away.
			if !res.state.DidResume {
				t.Error("the refused handshake was not a resumption")
			}
		})
	}
}

// A list that fails to parse leaves the previous one in force, and the
// error names the file and the line.
func TestClientVerifierBadListKeepsOld(t *testing.T) {
	key := mustKey(t)
	cert := mustCert(t, certSpec{key: key, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	f := mustClientFiles(t, nil, PinOf(cert).String()+"\n", "")
	var events []ClientListEvent
	var mu sync.Mutex
	v, err := NewClientVerifier(ClientVerifierOptions{Mode: ClientAuthRequire, AllowFile: f.allow, RevokedFile: f.revoked, Logger: testLogger(t),
		OnLoad: func(ev ClientListEvent) { mu.Lock(); events = append(events, ev); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	mustWriteFile(t, f.allow, []byte("# ok\n"+PinOf(cert).String()+"\nsha256//not-a-pin\n"))
	err = v.Reload()
	var le *ListError
	if !errors.As(err, &le) || le.Line != 3 || le.Path != f.allow {
		t.Fatalf("got %v, want a ListError for %s line 3", err, f.allow)
	}
	if !strings.Contains(err.Error(), f.allow+": line 3") {
		t.Errorf("error %q does not name the file and line", err)
	}
	if err := v.VerifyConnection(cs); err != nil {
		t.Fatalf("the previous list is not in force: %v", err)
	}
	mu.Lock()
	last := events[len(events)-1]
	mu.Unlock()
	if last.List != ListRevoked || events[len(events)-2].Err == nil || events[len(events)-2].Entries != 1 {
		t.Errorf("events %+v: want a failed allow load keeping 1 entry", events)
	}
	// Fixed, it is taken.
	mustWriteFile(t, f.allow, []byte("\n"))
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := refusal(v.VerifyConnection(cs)); got != RefusedUnknownClient {
		t.Errorf("got %q after the key left the list, want %q", got, RefusedUnknownClient)
	}
}

func TestNewClientVerifierRefuses(t *testing.T) {
	f := mustClientFiles(t, nil, "garbage\n", "")
	tests := []struct {
		name string
		opts ClientVerifierOptions
		want string
	}{
		{"off", ClientVerifierOptions{AllowFile: f.allow}, "nothing to verify"},
		{"no source", ClientVerifierOptions{Mode: ClientAuthRequire, RevokedFile: f.revoked}, "client CA file or an allow list"},
		{"bad list", ClientVerifierOptions{Mode: ClientAuthRequire, AllowFile: f.allow}, f.allow + ": line 1"},
		{"missing file", ClientVerifierOptions{Mode: ClientAuthRequire, AllowFile: f.allow + ".nope"}, "no such file"},
		{"not a CA", ClientVerifierOptions{Mode: ClientAuthRequire, CAFile: writeLeafPEM(t)}, "not a CA certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Logger = testLogger(t)
			_, err := NewClientVerifier(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func writeLeafPEM(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "leaf.crt")
	mustWriteFile(t, path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: mustLeaf(t, mustKey(t)).Raw}))
	return path
}

// Run follows the files: a revocation written by rename is in force
// within a second (the debounce is 100 ms).
func TestClientVerifierRunFollowsFiles(t *testing.T) {
	key := mustKey(t)
	cert := mustCert(t, certSpec{key: key, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	f := mustClientFiles(t, nil, PinOf(cert).String()+"\n", "")
	loaded := make(chan ClientListEvent, 16)
	v, err := NewClientVerifier(ClientVerifierOptions{Mode: ClientAuthRequire, AllowFile: f.allow, RevokedFile: f.revoked, Logger: testLogger(t),
		OnLoad: func(ev ClientListEvent) {
			if ev.Changed && ev.List == ListRevoked && ev.Trigger != "initial" {
				loaded <- ev
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- v.Run(ctx) }()
	defer func() { cancel(); <-done }()
	start := time.Now()
	mustWriteFile(t, f.revoked, []byte(PinOf(cert).String()+"\n"))
	select {
	case ev := <-loaded:
		if ev.Entries != 1 {
			t.Errorf("got %d entries, want 1", ev.Entries)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the revoke list was not reloaded")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %v, want within 1 s", took)
	}
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	if !v.Revoked(cs) {
		t.Error("Revoked is false after the reload")
	}
}

// Edits from many writers at once lose nothing: each takes the lock.
func TestEditAllowListConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.allow")
	const n = 20
	var wg sync.WaitGroup
	pins := make([]Pin, n)
	for i := range n {
		pins[i] = PinOf(mustLeaf(t, mustKey(t)))
		wg.Go(func() {
			err := EditAllowList(path, func(l *AllowList) (bool, error) {
				return l.Allow(AllowEntry{Pin: pins[i], Name: fmt.Sprintf("p%d", i)}), nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	l, err := ReadAllowList(path)
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != n {
		t.Fatalf("got %d entries, want %d", l.Len(), n)
	}
	for i, p := range pins {
		if e, ok := l.Lookup(p); !ok || e.Name != fmt.Sprintf("p%d", i) {
			t.Errorf("pin %d: got %+v, %v", i, e, ok)
		}
	}
}

func TestParseListsErrors(t *testing.T) {
	pin := PinOf(mustLeaf(t, mustKey(t))).String()
	tests := []struct {
		name, allow, revoke, want string
	}{
		{"bad name", pin + " name=a\x01b\n", "", "control character"},
		{"long name", pin + " name=" + strings.Repeat("a", 65) + "\n", "", "name"},
		{"duplicate", pin + "\n" + pin + "\n", "", "already listed"},
		{"not a pin", "hello\n", "", "line 1"},
		{"serial without issuer", "", "serial=01\n", "needs its issuer"},
		{"bad serial", "", "serial=zz issuer=" + pin + "\n", "hex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.allow != "" {
				_, err = ParseAllowList([]byte(tt.allow))
			} else {
				_, err = ParseRevokeList([]byte(tt.revoke))
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// Rendering a parsed list and parsing it again gives the same list.
func FuzzParseAllowList(f *testing.F) {
	f.Add([]byte("sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU= name=alice a comment\n# c\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseAllowList(data)
		if err != nil {
			return
		}
		again, err := ParseAllowList(l.Render())
		if err != nil {
			t.Fatalf("rendered list does not parse: %v\n%s", err, l.Render())
		}
		if len(again.Entries) != len(l.Entries) {
			t.Fatalf("got %d entries, want %d", len(again.Entries), len(l.Entries))
		}
		for i := range l.Entries {
			if again.Entries[i] != l.Entries[i] {
				t.Fatalf("entry %d: got %+v, want %+v", i, again.Entries[i], l.Entries[i])
			}
		}
	})
}

func FuzzParseRevokeList(f *testing.F) {
	f.Add([]byte("sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU= lost\nserial=0a:01 issuer=sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseRevokeList(data)
		if err != nil {
			return
		}
		again, err := ParseRevokeList(l.Render())
		if err != nil {
			t.Fatalf("rendered list does not parse: %v\n%s", err, l.Render())
		}
		if len(again.Entries) != len(l.Entries) {
			t.Fatalf("got %d entries, want %d", len(again.Entries), len(l.Entries))
		}
		for i := range l.Entries {
			if again.Entries[i] != l.Entries[i] {
				t.Fatalf("entry %d: got %+v, want %+v", i, again.Entries[i], l.Entries[i])
			}
		}
	})
}

// Admission by pin is a map lookup: its cost does not grow with the allow
// list (compare the 10 and 100,000 entry results).
func BenchmarkClientVerifierAllowList(b *testing.B) {
	key := mustKey(b)
	cert := mustCert(b, certSpec{key: key, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	for _, n := range []int{10, 100_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			var list strings.Builder
			for i := range n - 1 {
				var p Pin
				p.sum[0], p.sum[1], p.sum[2], p.sum[31] = byte(i), byte(i>>8), byte(i>>16), 1
				fmt.Fprintf(&list, "%v name=p%d\n", p, i)
			}
			fmt.Fprintf(&list, "%v name=me\n", PinOf(cert))
			dir := b.TempDir()
			allow := filepath.Join(dir, "clients.allow")
			if err := os.WriteFile(allow, []byte(list.String()), 0o644); err != nil {
				b.Fatal(err)
			}
			v, err := NewClientVerifier(ClientVerifierOptions{Mode: ClientAuthRequire, AllowFile: allow, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := v.VerifyConnection(cs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
