package clientcmd

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/cli/servercmd"
	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines and the
// test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is an sc-server run in process on 127.0.0.1:0.
type testServer struct {
	addr   string
	layout pki.Layout
	log    *syncBuffer
	reload chan os.Signal
	// reloaded receives a value after each reload the server ran.
	reloaded chan struct{}
}

// startServer runs sc-server (servercmd) with a fresh default layout, or
// in plaintext with plaintext set, until the test ends.
func startServer(t *testing.T, plaintext bool) *testServer {
	t.Helper()
	return startServerArgs(t, plaintext)
}

// startServerArgs is startServer with more sc-server flags.
func startServerArgs(t *testing.T, plaintext bool, extra ...string) *testServer {
	t.Helper()
	if plaintext {
		return startServerWith(t, nil, extra...)
	}
	res, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: filepath.Join(t.TempDir(), "certs")})
	if err != nil {
		t.Fatal(err)
	}
	return startServerWith(t, &res.Layout, extra...)
}

// startServerLayout runs sc-server on the layout l.
func startServerLayout(t *testing.T, l pki.Layout, extra ...string) *testServer {
	t.Helper()
	return startServerWith(t, &l, extra...)
}

// startServerWith runs sc-server on the layout l, or in plaintext when l
// is nil, with more flags.
func startServerWith(t *testing.T, l *pki.Layout, extra ...string) *testServer {
	t.Helper()
	ts := &testServer{log: &syncBuffer{}, reload: make(chan os.Signal), reloaded: make(chan struct{}, 16)}
	args := append([]string{"--listen", "127.0.0.1:0"}, extra...)
	if l == nil {
		args = append(args, "--plaintext")
	} else {
		ts.layout = *l
		args = append(args, "--cert", ts.layout.ServerCert, "--key", ts.layout.ServerKey)
	}
	listening := make(chan net.Addr, 1)
	cmd := servercmd.NewRootCmd(servercmd.Env{
		Getenv:    func(string) string { return "" },
		Reload:    ts.reload,
		Reloaded:  func() { ts.reloaded <- struct{}{} },
		Listening: func(a net.Addr) { listening <- a },
	})
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(ts.log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- cli.Main(ctx, cmd) }()
	select {
	case a := <-listening:
		ts.addr = a.String()
	case code := <-done:
		cancel()
		t.Fatalf("sc-server exited with %d:\n%s", code, ts.log)
	}
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("sc-server exited with %d:\n%s", code, ts.log)
		}
	})
	return ts
}

// rollover promotes the server's next key (sc-cert rotate --promote-next)
// and reloads it (SIGHUP); it returns the pins before and after.
func (ts *testServer) rollover(t *testing.T) (old, promoted, next pinning.Pin) {
	t.Helper()
	old = mustPin(t, ts.layout.ServerCert)
	promoted = mustPin(t, ts.layout.NextKey)
	if _, err := pki.Rotate(context.Background(), pki.RotateOptions{CertPath: ts.layout.ServerCert, PromoteNext: true}); err != nil {
		t.Fatal(err)
	}
	next = mustPin(t, ts.layout.NextKey)
	ts.reloadNow(t)
	return old, promoted, next
}

// reloadNow sends SIGHUP and waits for a reload that started after it.
func (ts *testServer) reloadNow(t *testing.T) {
	t.Helper()
	// Reloads run apart from the signal loop: wait for one that started
	// after the request.
	for len(ts.reloaded) > 0 {
		<-ts.reloaded
	}
	ts.reload <- os.Interrupt
	select {
	case <-ts.reloaded:
	case <-time.After(30 * time.Second):
		t.Fatalf("no reload within 30s:\n%s", ts.log)
	}
}

func (ts *testServer) pin(t *testing.T) pinning.Pin { return mustPin(t, ts.layout.ServerCert) }

func (ts *testServer) nextPin(t *testing.T) pinning.Pin { return mustPin(t, ts.layout.NextKey) }

func mustPin(t *testing.T, file string) pinning.Pin {
	t.Helper()
	p, err := pinning.ReadPinFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// result is one sc-client run.
type result struct {
	code           int
	stdout, stderr string
}

// run runs sc-client in process with args, standard input in, and
// terminal telling whether stdin counts as a terminal.
func run(t *testing.T, in string, terminal bool, args ...string) result {
	t.Helper()
	cmd := NewRootCmd(Env{IsTerminal: func() bool { return terminal }})
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(in))
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := cli.Main(ctx, cmd)
	return result{code, out.String(), errOut.String()}
}

// mustRun runs sc-client and requires exit code 0.
func mustRun(t *testing.T, in string, args ...string) result {
	t.Helper()
	r := run(t, in, false, args...)
	if r.code != 0 {
		t.Fatalf("sc-client %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// startNoKeysServer runs a TLS server that does not answer KEYS (an ERROR
// reply), as an older server would, with the layout's certificate.
func startNoKeysServer(t *testing.T) (string, pki.Layout) {
	t.Helper()
	res, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: filepath.Join(t.TempDir(), "certs")})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := pki.LoadPair(res.Layout.ServerCert, res.Layout.ServerKey, pki.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cert := pair.TLSCertificate()
	srv, err := server.New(server.Options{
		TLSConfig: &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }},
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
		_ = srv.Shutdown(ctx)
		<-served
	})
	return ln.Addr().String(), res.Layout
}
