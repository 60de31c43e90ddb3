package servercmd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/pki"
)

// syncBuffer is a bytes.Buffer safe for the server's logging goroutines
// and the test reading it.
type syncBuffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	wake chan struct{} // signalled after each write, for waiters
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wake != nil {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return s.b.Write(p)
}

// written returns a channel that receives after writes.
func (s *syncBuffer) written() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wake == nil {
		s.wake = make(chan struct{}, 1)
	}
	return s.wake
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is an sc-server run in process.
type running struct {
	t              *testing.T
	addr           string
	stdout, stderr *syncBuffer
	reload         chan os.Signal
	reloaded       chan struct{}
	cancel         context.CancelFunc
	done           chan int // the exit code
}

// startServer runs sc-server with args (plus --listen 127.0.0.1:0) in
// process and waits until it listens. The test's end stops it.
func startServer(t *testing.T, env Env, args ...string) *running {
	t.Helper()
	r := &running{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, reload: make(chan os.Signal), reloaded: make(chan struct{}, 16), done: make(chan int, 1)}
	listening := make(chan net.Addr, 1)
	env.Listening = func(a net.Addr) { listening <- a }
	env.Reload = r.reload
	env.Reloaded = func() { r.reloaded <- struct{}{} }
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	cmd := NewRootCmd(env)
	cmd.SetArgs(append([]string{"--listen", "127.0.0.1:0"}, args...))
	cmd.SetOut(r.stdout)
	cmd.SetErr(r.stderr)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- cli.Main(ctx, cmd) }()
	select {
	case a := <-listening:
		r.addr = a.String()
	case code := <-r.done:
		cancel()
		t.Fatalf("sc-server exited with %d before listening:\n%s", code, r.stderr)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("sc-server did not listen within 30s:\n%s", r.stderr)
	}
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// stop cancels the server's context, as SIGTERM does, and returns its exit
// code.
func (r *running) stop() int {
	r.t.Helper()
	r.cancel()
	select {
	case code := <-r.done:
		r.done <- code // for the cleanup
		return code
	case <-time.After(30 * time.Second):
		r.t.Fatalf("sc-server did not stop within 30s:\n%s", r.stderr)
	}
	return -1
}

// requestReload asks for a reload and returns once one has run after it.
func (r *running) requestReload() {
	r.t.Helper()
	// Drain reloads that ran before this request.
	for len(r.reloaded) > 0 {
		<-r.reloaded
	}
	r.reload <- os.Interrupt
	select {
	case <-r.reloaded:
	case <-time.After(30 * time.Second):
		r.t.Fatalf("no reload ran within 30s of the request:\n%s", r.stderr)
	}
}

// mustInit makes the default layout in a new directory and returns it.
func mustInit(t *testing.T) pki.Layout {
	t.Helper()
	res, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: filepath.Join(t.TempDir(), "certs")})
	if err != nil {
		t.Fatal(err)
	}
	return res.Layout
}

// caConfig trusts the layout's CA, for version v (0: any).
func caConfig(t *testing.T, l pki.Layout, v uint16) *tls.Config {
	t.Helper()
	ca, err := pki.ReadCertificateFile(l.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{RootCAs: pool, MinVersion: v, MaxVersion: v}
}

func mustDial(t *testing.T, addr string, cfg *tls.Config) *client.Conn {
	t.Helper()
	c, err := client.Dial(context.Background(), addr, client.Options{TLSConfig: cfg, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func layoutArgs(l pki.Layout) []string {
	return []string{"--cert", l.ServerCert, "--key", l.ServerKey}
}
