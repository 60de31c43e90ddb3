package clientcmd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/cli/certcmd"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// startImpostor serves, on its own address, the certificate and key in
// certPEM/keyPEM (a stolen old pair) and announces keys as given: a
// machine in the middle that holds the old key. It returns its address.
func startImpostor(t *testing.T, certFile, keyFile string, keys proto.KeySet) string {
	t.Helper()
	pair, err := pki.LoadPair(certFile, keyFile, pki.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cert := pair.TLSCertificate()
	body := proto.AppendKeySet(nil, keys)
	srv, err := server.New(server.Options{
		TLSConfig: &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }},
		Keys:      func() []byte { return body },
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-served
	})
	return ln.Addr().String()
}

// copyPair keeps a copy of the server's current pair: what a thief took.
func copyPair(t *testing.T, l pki.Layout) (cert, key string) {
	t.Helper()
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "stolen.crt"), filepath.Join(dir, "stolen.key")
	for _, f := range [][2]string{{l.ServerCert, cert}, {l.ServerKey, key}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cert, key
}

// emergencyRollover promotes the next key and revokes the old one with
// sc-cert rotate --promote-next --revoke-old, and reloads the server.
func (ts *testServer) emergencyRollover(t *testing.T) (old, promoted pinning.Pin) {
	t.Helper()
	old, promoted = ts.pin(t), ts.nextPin(t)
	code, out := runCert(t, "rotate", "--cert", ts.layout.ServerCert, "--promote-next", "--revoke-old")
	if code != 0 || !strings.Contains(out, "Revoked the old key "+old.String()) {
		t.Fatalf("sc-cert rotate --promote-next --revoke-old: exit %d\n%s", code, out)
	}
	ts.reloadNow(t)
	return old, promoted
}

// Issue 15: an emergency rollover reaches trust-on-first-use clients. A
// client that saw the revocation refuses an impostor holding the old key,
// with a banner that says the server's operator revoked it; one that never
// connected after the revocation still accepts the impostor (the limit of
// any announcement), until it has talked to the real server once.
func TestRevocationReachesTOFUClients(t *testing.T) {
	for _, engine := range server.Engines() {
		t.Run(engine, func(t *testing.T) {
			ts := startServerArgs(t, false, "--engine", engine)
			stolenCert, stolenKey := copyPair(t, ts.layout)
			dir := t.TempDir()
			told, untold := filepath.Join(dir, "told"), filepath.Join(dir, "untold")
			for _, kh := range []string{told, untold} {
				mustRun(t, "", "echo", "hi", "--server", ts.addr, "--known-hosts", kh)
			}

			old, promoted := ts.emergencyRollover(t)
			r := mustRun(t, "", "keys", "--server", ts.addr, "--known-hosts", told)
			if !strings.Contains(r.stdout, "revoked "+old.String()) {
				t.Fatalf("sc-client keys does not show the revoked line:\n%s", r.stdout)
			}
			if !strings.Contains(r.stderr, "revoked the key "+old.String()) {
				t.Errorf("the client did not say it recorded the revocation:\n%s", r.stderr)
			}
			if kh := readFile(t, told); !strings.Contains(kh, "current="+promoted.String()) || !strings.Contains(kh, "revoked="+old.String()+";first=") {
				t.Fatalf("known hosts after the revocation:\n%s", kh)
			}

			// The impostor with the old key announces it as current, and
			// the real key as its next key and as revoked: it tries to
			// lock clients out of the real server for good.
			mitm := startImpostor(t, stolenCert, stolenKey, proto.KeySet{Current: old.String(), Next: []string{promoted.String()}, Revoked: []string{promoted.String()}})
			// The stores are keyed by HOST:PORT: point them at the
			// impostor's address, as a DNS or routing attack would.
			for _, kh := range []string{told, untold} {
				b := readFile(t, kh)
				if err := os.WriteFile(kh, []byte(strings.ReplaceAll(b, ts.addr, mitm)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			before := readFile(t, told)
			r = run(t, "", false, "echo", "hi", "--server", mitm, "--known-hosts", told)
			if r.code != ExitKeyMismatch || !strings.Contains(r.stderr, "PRESENTED A REVOKED KEY") || !strings.Contains(r.stderr, "revoked by the server's operator") {
				t.Fatalf("told client against the impostor: exit %d\n%s", r.code, r.stderr)
			}
			if readFile(t, told) != before {
				t.Error("the refused connection changed the known hosts file")
			}
			// The limit: a client that never saw the revocation is fooled,
			// and the impostor's "revoked NEW" is ignored (the old key is
			// not the new key's successor).
			r = mustRun(t, "", "echo", "hi", "--server", mitm, "--known-hosts", untold)
			if !strings.Contains(r.stderr, "ignored the revocation of "+promoted.String()) {
				t.Errorf("the impostor's revocation of the new key was not reported as ignored:\n%s", r.stderr)
			}
			if kh := readFile(t, untold); strings.Contains(kh, "revoked=") || !strings.Contains(kh, promoted.String()) {
				t.Fatalf("the impostor revoked the new key:\n%s", kh)
			}
			// Once it has talked to the real server, it refuses the
			// impostor too.
			b := readFile(t, untold)
			if err := os.WriteFile(untold, []byte(strings.ReplaceAll(b, mitm, ts.addr)), 0o600); err != nil {
				t.Fatal(err)
			}
			mustRun(t, "", "echo", "hi", "--server", ts.addr, "--known-hosts", untold)
			b = readFile(t, untold)
			if err := os.WriteFile(untold, []byte(strings.ReplaceAll(b, ts.addr, mitm)), 0o600); err != nil {
				t.Fatal(err)
			}
			if r := run(t, "", false, "echo", "hi", "--server", mitm, "--known-hosts", untold); r.code != ExitKeyMismatch {
				t.Fatalf("after seeing the revocation: exit %d, want %d\n%s", r.code, ExitKeyMismatch, r.stderr)
			}
		})
	}
}

// Issue 15: 20 client processes learning a revocation at once leave one
// revoked mark for the host, and lose nothing else in the file.
func TestConcurrentClientsLearnRevocationOnce(t *testing.T) {
	ts := startServer(t, false)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	mustRun(t, "", "echo", "hi", "--server", ts.addr, "--known-hosts", kh)
	// Other hosts' lines, which no client touches.
	others := "other.example:4242 current=" + pinning.PinOfSPKI([]byte("x")).String() + ";via=added\n"
	f, err := os.OpenFile(kh, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(others)
	f.Close()
	old, promoted := ts.emergencyRollover(t)

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	outs := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			cmd := exec.Command(self, "echo", "hi", "--server", ts.addr, "--known-hosts", kh, "--timeout", "30s")
			cmd.Env = append(os.Environ(), clientProcessEnv+"=1")
			out, err := cmd.CombinedOutput()
			outs[i], errs[i] = string(out), err
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("client %d: %v\n%s", i, errs[i], outs[i])
		}
	}
	got := readFile(t, kh)
	if c := strings.Count(got, "revoked="+old.String()); c != 1 {
		t.Errorf("got %d revoked marks for the old key, want 1:\n%s", c, got)
	}
	if !strings.Contains(got, "current="+promoted.String()) || !strings.Contains(got, others) || strings.Count(got, ts.addr+" ") != 1 {
		t.Errorf("known hosts after 20 clients:\n%s", got)
	}
}

// Pin mode: --revoked-pin refuses the key, and a --pin that is also
// revoked is a usage error at start.
func TestRevokedPinFlag(t *testing.T) {
	ts := startServer(t, false)
	pin, next := ts.pin(t), ts.nextPin(t)
	r := run(t, "", false, "echo", "hi", "--server", ts.addr, "--pin", next.String(), "--revoked-pin", pin.String())
	if r.code != ExitKeyMismatch || !strings.Contains(r.stderr, "--revoked-pin") {
		t.Fatalf("revoked key: exit %d\n%s", r.code, r.stderr)
	}
	r = run(t, "", false, "echo", "hi", "--server", ts.addr, "--pin", pin.String(), "--revoked-pin", pin.String())
	if r.code != 2 || !strings.Contains(r.stderr, "both trusted and revoked") {
		t.Fatalf("pin also revoked: exit %d\n%s", r.code, r.stderr)
	}
	mustRun(t, "", "echo", "hi", "--server", ts.addr, "--pin", pin.String(), "--revoked-pin", next.String())
}

// runCert runs sc-cert in process and returns its exit code and output.
func runCert(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := certcmd.NewRootCmd(certcmd.Env{Getenv: func(string) string { return "" }})
	cmd.SetArgs(args)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	return cli.Main(context.Background(), cmd), out.String()
}

// dirState is every file of dir and its content, to show that a refused
// command wrote nothing.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		fmt.Fprintf(&b, "%s %x\n", e.Name(), sha256.Sum256(data))
	}
	return b.String()
}

// Issue 15: the next key kept offline. The server holds only its public
// half; a TOFU client learns its pin; a promotion with a wrong key is
// refused with nothing written; the promotion with the key brought back
// works, the client follows, and the fresh next key goes offline again.
func TestOfflineNextKeyRollover(t *testing.T) {
	dir := t.TempDir()
	certs, offline := filepath.Join(dir, "certs"), filepath.Join(dir, "offline")
	if code, out := runCert(t, "init", "--dir", certs, "--offline-next", offline); code != 0 {
		t.Fatalf("init --offline-next: exit %d\n%s", code, out)
	}
	l := pki.DefaultLayout(certs)
	if _, err := os.Stat(l.NextKey); err == nil {
		t.Fatal("init --offline-next left the private next key on the server")
	}
	offlineKey := filepath.Join(offline, pki.NextKeyFile)
	nextPin := mustPin(t, offlineKey)
	if got := mustPin(t, filepath.Join(certs, "server.next.pub")); !got.Equal(nextPin) {
		t.Fatalf("server.next.pub pin %v, want %v", got, nextPin)
	}

	srv := startServerLayout(t, l)
	kh := filepath.Join(dir, "known_hosts")
	mustRun(t, "", "echo", "hi", "--server", srv.addr, "--known-hosts", kh)
	if !strings.Contains(readFile(t, kh), "backup="+nextPin.String()) {
		t.Fatalf("the client did not learn the offline next pin:\n%s", readFile(t, kh))
	}

	// A wrong key brought back: refused, nothing written.
	wrong := filepath.Join(dir, "wrong.key")
	if code, out := runCert(t, "create", "--cert", filepath.Join(dir, "wrong.crt"), "--key", wrong); code != 0 {
		t.Fatalf("making a wrong key: exit %d\n%s", code, out)
	}
	before, beforeOffline := dirState(t, certs), dirState(t, offline)
	code, out := runCert(t, "rotate", "--cert", l.ServerCert, "--promote-next", "--next-key", wrong)
	if code == 0 || !strings.Contains(out, "nothing was written") {
		t.Fatalf("promotion with the wrong key: exit %d\n%s", code, out)
	}
	if dirState(t, certs) != before || dirState(t, offline) != beforeOffline {
		t.Fatal("a refused promotion changed files")
	}
	// Without the key brought back: refused too.
	if code, out := runCert(t, "rotate", "--cert", l.ServerCert, "--promote-next"); code == 0 || !strings.Contains(out, "kept offline") {
		t.Fatalf("promotion without --next-key: exit %d\n%s", code, out)
	}

	// The right key: promoted; the fresh next key goes back offline.
	code, out = runCert(t, "rotate", "--cert", l.ServerCert, "--promote-next", "--next-key", offlineKey)
	if code != 0 {
		t.Fatalf("promotion: exit %d\n%s", code, out)
	}
	if got := mustPin(t, l.ServerCert); !got.Equal(nextPin) {
		t.Fatalf("served pin after the promotion %v, want %v", got, nextPin)
	}
	freshPin := mustPin(t, offlineKey)
	if freshPin.Equal(nextPin) || !mustPin(t, filepath.Join(certs, "server.next.pub")).Equal(freshPin) {
		t.Fatalf("after the promotion the offline key %v and server.next.pub disagree", freshPin)
	}
	if _, err := os.Stat(l.NextKey); err == nil {
		t.Fatal("the promotion left a private next key on the server")
	}
	srv.reloadNow(t)
	r := mustRun(t, "", "echo", "hi", "--server", srv.addr, "--known-hosts", kh)
	if !strings.Contains(r.stderr, "has moved to its next key") || !strings.Contains(readFile(t, kh), "backup="+freshPin.String()) {
		t.Fatalf("the client did not follow the rollover:\n%s\n%s", r.stderr, readFile(t, kh))
	}
}

// Issue 15: sc-cert pin add --revoked --to hosts writes revoked-pin lines,
// which sc-client --host applies: a pin-mode client refuses the revoked
// key, with the banner.
func TestRevokedPinInHostsFile(t *testing.T) {
	ts := startServer(t, false)
	pin, next := ts.pin(t), ts.nextPin(t)
	hostsFile := filepath.Join(t.TempDir(), "hosts")
	host, _, _ := net.SplitHostPort(ts.addr)
	if code, out := runCert(t, "pin", "add", "--to", "hosts", "--hosts-file", hostsFile, ts.addr, next.String()); code != 0 {
		t.Fatalf("pin add: exit %d\n%s", code, out)
	}
	if code, out := runCert(t, "pin", "add", "--revoked", "--to", "hosts", "--hosts-file", hostsFile, ts.addr, pin.String()); code != 0 || !strings.Contains(out, "refuses a server presenting") {
		t.Fatalf("pin add --revoked: exit %d\n%s", code, out)
	}
	if got := readFile(t, hostsFile); !strings.Contains(got, "revoked-pin "+pin.String()) {
		t.Fatalf("hosts file:\n%s", got)
	}
	r := run(t, "", false, "echo", "hi", "--host", host, "--hosts-file", hostsFile)
	if r.code != ExitKeyMismatch || !strings.Contains(r.stderr, "PRESENTED A REVOKED KEY") {
		t.Fatalf("sc-client --host: exit %d\n%s", r.code, r.stderr)
	}
	// In the known hosts file, --revoked is sc-cert pin revoke.
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if code, out := runCert(t, "pin", "add", "--revoked", "--known-hosts", kh, ts.addr, pin.String()); code != 0 {
		t.Fatalf("pin add --revoked: exit %d\n%s", code, out)
	}
	if r := run(t, "", false, "echo", "hi", "--server", ts.addr, "--known-hosts", kh); r.code != ExitKeyMismatch || !strings.Contains(r.stderr, "sc-cert pin revoke") {
		t.Fatalf("first use of a key revoked by hand: exit %d\n%s", r.code, r.stderr)
	}
}
