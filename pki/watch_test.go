package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Shared fixtures of the reload tests (source, ticket keys, renewal).

// waitTimeout is the generous deadline for anything the tests wait on.
const waitTimeout = 10 * time.Second

// certDir is a default-layout certificate directory with its CA at hand,
// to issue replacement certificates the way an operator would.
type certDir struct {
	t     testing.TB
	l     Layout
	ca    *x509.Certificate
	caKey crypto.Signer
	roots *x509.CertPool
}

func newCertDir(t testing.TB, opts InitOptions) *certDir {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "certs")
	}
	r, err := InitLayout(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	d := &certDir{t: t, l: r.Layout, ca: r.CA, roots: x509.NewCertPool()}
	d.roots.AddCert(r.CA)
	if !opts.SelfSigned {
		k, err := ReadKeyFile(r.Layout.CAKey, KeyOptions{Passphrase: passphraseOrNil(opts.CAKeyPassphrase)})
		if err != nil {
			t.Fatal(err)
		}
		d.caKey = k.Signer
	}
	return d
}

func passphraseOrNil(p []byte) func() ([]byte, error) {
	if len(p) == 0 {
		return nil
	}
	return func() ([]byte, error) { return p, nil }
}

// key reads a key file of the directory.
func (d *certDir) key(path string) crypto.Signer {
	d.t.Helper()
	k, err := ReadKeyFile(path, KeyOptions{})
	if err != nil {
		d.t.Fatal(err)
	}
	return k.Signer
}

// issue makes a certificate for key signed by the directory's CA; edit
// may change the options first.
func (d *certDir) issue(key crypto.Signer, edit func(*CertOptions)) *x509.Certificate {
	d.t.Helper()
	opts := CertOptions{CommonName: "localhost", DNSNames: []string{"localhost"}, Issuer: d.ca, IssuerKey: d.caKey}
	if edit != nil {
		edit(&opts)
	}
	c, err := CreateCertificate(key.Public(), opts)
	if err != nil {
		d.t.Fatal(err)
	}
	return c
}

// keyPEM encodes a key unencrypted.
func keyPEM(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	b, err := EncodeKeyPEM(k, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorder collects log records and OnReload events, and wakes waiters on
// each. slog output goes to t.Logf.
type recorder struct {
	t      testing.TB
	mu     sync.Mutex
	logs   []logRecord
	events []ReloadEvent
	wake   chan struct{}
}

type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (r logRecord) String() string {
	return fmt.Sprintf("%s %q %v", r.level, r.msg, r.attrs)
}

func newRecorder(t testing.TB) *recorder {
	return &recorder{t: t, wake: make(chan struct{}, 1)}
}

func (r *recorder) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *recorder) logger() *slog.Logger { return slog.New(recHandler{r}) }

// onReload is a CertReloaderOptions.OnReload.
func (r *recorder) onReload(ev ReloadEvent) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	r.poke()
}

// waitFor waits until cond holds, re-testing it whenever a log record or
// event arrives, and at most every 50 ms for conditions about the outside
// world (handshakes).
func (r *recorder) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-r.wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			r.t.Fatalf("timed out after %v waiting for %s; logs:\n%s", waitTimeout, what, r.dump())
		}
	}
}

// waitWatching waits until Run has set up its watches: its first look,
// right after, is a TriggerRewatch reload. A change made before that
// would be caught only by the periodic check.
func (r *recorder) waitWatching() {
	r.t.Helper()
	r.waitFor("the watches", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, ev := range r.events {
			if ev.Trigger == TriggerRewatch {
				return true
			}
		}
		return false
	})
}

func (r *recorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, l := range r.logs {
		fmt.Fprintln(&b, l)
	}
	return b.String()
}

// records returns the log records at level or above.
func (r *recorder) records(level slog.Level) []logRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []logRecord
	for _, l := range r.logs {
		if l.level >= level {
			out = append(out, l)
		}
	}
	return out
}

func (r *recorder) eventCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// eventsSince returns the events from index i on.
func (r *recorder) eventsSince(i int) []ReloadEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ReloadEvent(nil), r.events[i:]...)
}

// allLogText is every record as text, for "never logs key material".
func (r *recorder) allLogText() string { return r.dump() }

type recHandler struct{ r *recorder }

func (h recHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h recHandler) WithGroup(string) slog.Handler            { return h }
func (h recHandler) Handle(_ context.Context, rec slog.Record) error {
	lr := logRecord{level: rec.Level, msg: rec.Message, attrs: map[string]string{}}
	rec.Attrs(func(a slog.Attr) bool {
		lr.attrs[a.Key] = a.Value.String()
		return true
	})
	h.r.t.Logf("log: %s", lr)
	h.r.mu.Lock()
	h.r.logs = append(h.r.logs, lr)
	h.r.mu.Unlock()
	h.r.poke()
	return nil
}

// runInBackground runs a Run method until the test ends, and fails the
// test if it returns an error.
func runInBackground(t testing.TB, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// tlsServer is a TLS echo server on 127.0.0.1:0.
type tlsServer struct {
	addr string
	wg   sync.WaitGroup
}

func startTLSServer(t testing.TB, cfg *tls.Config) *tlsServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{addr: ln.Addr().String()}
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				tc := tls.Server(c, cfg)
				c.SetDeadline(time.Now().Add(waitTimeout))
				if err := tc.Handshake(); err != nil {
					return
				}
				c.SetDeadline(time.Time{})
				// Echo, so TLS 1.3 clients read their session tickets and
				// long-lived connections can prove they still work.
				io.Copy(tc, tc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// serverConfig is a TLS config served by getCert.
func serverConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{GetCertificate: getCert, MinVersion: tls.VersionTLS12}
}

// handshake dials addr, completes a handshake verifying the certificate
// against roots for "localhost", and returns the leaf it was served.
func handshake(addr string, roots *x509.CertPool, version uint16) (*x509.Certificate, error) {
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: waitTimeout},
		Config:    &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: version, MaxVersion: version},
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// mustServe asserts that a handshake is served want.
func mustServe(t testing.TB, addr string, roots *x509.CertPool, want *x509.Certificate) {
	t.Helper()
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		got, err := handshake(addr, roots, v)
		if err != nil {
			t.Fatalf("handshake (%s): %v", tls.VersionName(v), err)
		}
		if !got.Equal(want) {
			t.Fatalf("handshake (%s): served serial %s, want %s", tls.VersionName(v), SerialHex(got.SerialNumber), SerialHex(want.SerialNumber))
		}
	}
}

// sameSerial reports whether the source serves cert.
func serving(s *CertReloader, cert *x509.Certificate) bool {
	return s.State().Certificate.Equal(cert)
}

// fakeClock is an injectable clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// writeInPieces rewrites path in place (truncate, then n writes), as a
// program that does not write atomically would.
func writeInPieces(t testing.TB, path string, data []byte, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	step := (len(data) + n - 1) / n
	for len(data) > 0 {
		m := min(step, len(data))
		if _, err := f.Write(data[:m]); err != nil {
			t.Fatal(err)
		}
		data = data[m:]
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// k8sDir mimics a Kubernetes secret volume: the files are symlinks through
// "..data", itself a symlink to a timestamped directory that the kubelet
// replaces on every update (atomic_writer.go: write the new directory,
// link "..data_tmp" to it, rename that over "..data", remove the old one).
type k8sDir struct {
	t   testing.TB
	dir string
	gen int
}

func newK8sDir(t testing.TB, files map[string][]byte) *k8sDir {
	t.Helper()
	k := &k8sDir{t: t, dir: filepath.Join(t.TempDir(), "secret")}
	if err := os.Mkdir(k.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	k.update(files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(k.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func (k *k8sDir) genDir(gen int) string { return fmt.Sprintf("..2026_01_01_00_00_%02d.000000001", gen) }

func (k *k8sDir) update(files map[string][]byte) {
	k.t.Helper()
	k.gen++
	gd := filepath.Join(k.dir, k.genDir(k.gen))
	if err := os.Mkdir(gd, 0o755); err != nil {
		k.t.Fatal(err)
	}
	for name, data := range files {
		perm := os.FileMode(0o644)
		if bytes.Contains(data, []byte("PRIVATE KEY")) {
			perm = 0o600
		}
		if err := os.WriteFile(filepath.Join(gd, name), data, perm); err != nil {
			k.t.Fatal(err)
		}
	}
	tmp := filepath.Join(k.dir, "..data_tmp")
	if err := os.Symlink(k.genDir(k.gen), tmp); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.dir, "..data")); err != nil {
		k.t.Fatal(err)
	}
	if k.gen > 1 {
		if err := os.RemoveAll(filepath.Join(k.dir, k.genDir(k.gen-1))); err != nil {
			k.t.Fatal(err)
		}
	}
}

// must fails the test on an error.
func mustNoErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var errRefused = errors.New("refused by test hook")

// Close to the real clock, the watcher itself: events in a directory
// holding a watched file wake it; events elsewhere do not; a watched
// directory that is replaced is watched again.
func TestWatcherEvents(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "certs")
	mustNoErr(t, os.Mkdir(dir, 0o755))
	other := filepath.Join(root, "other")
	mustNoErr(t, os.Mkdir(other, 0o755))
	file := filepath.Join(dir, "server.crt")
	mustNoErr(t, os.WriteFile(file, []byte("x"), 0o644))

	rec := newRecorder(t)
	triggers := make(chan Trigger, 100)
	w := watcher{files: []string{file}, debounce: 10 * time.Millisecond, interval: -1, log: rec.logger(), what: "test"}
	runInBackground(t, func(ctx context.Context) error {
		return w.run(ctx, func(_ context.Context, tr Trigger) bool { triggers <- tr; return false })
	})
	next := func(what string) Trigger {
		t.Helper()
		select {
		case tr := <-triggers:
			return tr
		case <-time.After(waitTimeout):
			t.Fatalf("no reload after %s", what)
			return ""
		}
	}
	if got := next("start"); got != TriggerRewatch {
		t.Fatalf("first check: got %q, want %q", got, TriggerRewatch)
	}

	tests := []struct {
		name string
		do   func()
	}{
		{"write", func() { mustNoErr(t, os.WriteFile(file, []byte("y"), 0o644)) }},
		{"unrelated file in the directory", func() { mustNoErr(t, os.WriteFile(filepath.Join(dir, "..data"), nil, 0o644)) }},
		{"directory replaced", func() {
			mustNoErr(t, os.Rename(dir, dir+".old"))
			mustNoErr(t, os.Mkdir(dir, 0o755))
		}},
		{"write in the new directory", func() { mustNoErr(t, os.WriteFile(file, []byte("z"), 0o644)) }},
	}
	for _, tc := range tests {
		tc.do()
		if got := next(tc.name); got != TriggerFileEvent && got != TriggerRewatch {
			t.Errorf("%s: got trigger %q, want a file event", tc.name, got)
		}
		// Drain what the same burst caused.
	drain:
		for {
			select {
			case <-triggers:
			case <-time.After(100 * time.Millisecond):
				break drain
			}
		}
	}

	// A file elsewhere causes nothing.
	mustNoErr(t, os.WriteFile(filepath.Join(other, "x"), nil, 0o644))
	select {
	case tr := <-triggers:
		t.Errorf("write in an unwatched directory caused a %q reload", tr)
	case <-time.After(200 * time.Millisecond):
	}
}
