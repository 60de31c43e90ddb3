package benchcmd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/bench"
	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spf13/cobra"
)

// testServer is an in-process server on 127.0.0.1:0 with a self-signed
// P-256 certificate written to caFile.
type testServer struct {
	addr   string
	caFile string
	pin    string
}

func mustServe(t *testing.T, plaintext bool) *testServer {
	t.Helper()
	return mustServeWith(t, plaintext, nil)
}

// mustServeWith is mustServe with configure, when not nil, given the
// server's options (their TLS config set) before the server is made.
func mustServeWith(t *testing.T, plaintext bool, configure func(*server.Options)) *testServer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bench test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{caFile: filepath.Join(t.TempDir(), "ca.crt"), pin: pinning.PinOf(leaf).String()}
	if err := os.WriteFile(ts.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if !plaintext {
		cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
		opts.TLSConfig = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }}
	}
	if configure != nil {
		configure(&opts)
	}
	srv, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = ln.Addr().String()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutting the server down: %v", err)
		}
		<-errc
	})
	return ts
}

// runCmd runs "sc-client bench ARGS..." in process under a root set up as
// sc-client's, and returns stdout, stderr and the exit code.
func runCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root := &cobra.Command{Use: "sc-client"}
	cli.SetupRoot(root)
	root.AddCommand(NewCmd())
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"bench"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = cli.Main(ctx, root)
	return out.String(), errOut.String(), code
}

func TestBenchCommand(t *testing.T) {
	tlsSrv := mustServe(t, false)
	plain := mustServe(t, true)
	pid := "0"
	if runtime.GOOS == "linux" {
		pid = strconv.Itoa(os.Getpid())
	}
	tests := []struct {
		name       string
		args       []string
		wantMode   bench.Mode
		wantOps    int64
		wantTLS    string
		wantGroup  string
		wantStderr string
	}{
		{"echo with --ca", []string{"echo", "--server", tlsSrv.addr, "--ca", tlsSrv.caFile, "--conns", "3", "--count", "90", "--groups", "x25519"}, bench.ModeEcho, 90, "TLS 1.3", "X25519", ""},
		{"pipeline with --pin over TLS 1.2", []string{"pipeline", "--server", tlsSrv.addr, "--pin", tlsSrv.pin, "--tls", "1.2", "--conns", "2", "--depth", "8", "--count", "64", "--groups", "P-256"}, bench.ModePipeline, 64, "TLS 1.2", "CurveP256", ""},
		{"handshake, resumed, insecure", []string{"handshake", "--server", tlsSrv.addr, "--insecure", "--resume", "--conns", "2", "--count", "10", "--groups", "X25519", "--pid", pid}, bench.ModeHandshake, 10, "TLS 1.3", "X25519", "--insecure"},
		{"idle in plaintext", []string{"idle", "--server", plain.addr, "--plaintext", "--conns", "20", "--duration", "1ms", "--settle", "1ms", "--pid", pid}, bench.ModeIdle, 20, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCmd(t, append(tt.args, "--json")...)
			if code != 0 {
				t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
			}
			var rep bench.Report
			if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
				t.Fatalf("stdout is not a JSON report: %v\n%s", err, stdout)
			}
			if rep.Mode != tt.wantMode || rep.Ops != tt.wantOps || rep.Errors != 0 {
				t.Errorf("got mode %s, %d ops, %d errors; want %s, %d, 0", rep.Mode, rep.Ops, rep.Errors, tt.wantMode, tt.wantOps)
			}
			if rep.TLSVersion != tt.wantTLS || rep.Group != tt.wantGroup {
				t.Errorf("got %q %q, want %q %q", rep.TLSVersion, rep.Group, tt.wantTLS, tt.wantGroup)
			}
			if (pid != "0" && slices.Contains(tt.args, "--pid")) != (rep.Server != nil) {
				t.Errorf("server stats %+v with args %q", rep.Server, tt.args)
			}
			if tt.wantStderr != "" && !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantStderr, stderr)
			}
			if tt.wantStderr == "" && stderr != "" {
				t.Errorf("got stderr %q, want none (not a terminal: no progress bar)", stderr)
			}
		})
	}
	t.Run("text report", func(t *testing.T) {
		stdout, stderr, code := runCmd(t, "echo", "--server", plain.addr, "--plaintext", "--conns", "1", "--count", "5")
		if code != 0 {
			t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
		}
		for _, want := range []string{"echo: 1 connections, ping-pong ECHOs of 64 bytes", "plaintext", "ops         5 in", "errors      0", "latency     p50"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("report lacks %q:\n%s", want, stdout)
			}
		}
	})
	t.Run("wrong pin", func(t *testing.T) {
		other := mustServe(t, false)
		_, stderr, code := runCmd(t, "echo", "--server", tlsSrv.addr, "--pin", other.pin)
		if code != cli.ExitFailure || !strings.Contains(stderr, "sc-client: error: ") || !strings.Contains(stderr, "hint: is the server running") {
			t.Errorf("exit code %d, stderr:\n%s\nwant 1 with an error and a hint", code, stderr)
		}
	})
}

func TestBenchUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no mode", nil, "want a MODE"},
		{"unknown mode", []string{"flood", "--plaintext"}, `unknown mode "flood"`},
		{"no trust", []string{"echo"}, "give --ca FILE, --pin PIN or --insecure"},
		{"plaintext and pin", []string{"echo", "--plaintext", "--pin", "sha256//AAAA"}, "[pin plaintext]"},
		{"insecure and ca", []string{"echo", "--insecure", "--ca", "x"}, "[ca insecure]"},
		{"bad version", []string{"echo", "--insecure", "--tls", "1.4"}, `--tls "1.4": want 1.2 or 1.3`},
		{"bad group", []string{"echo", "--insecure", "--groups", "x25519,ffdhe2048"}, `unknown group "ffdhe2048"`},
		{"resume in plaintext", []string{"handshake", "--plaintext", "--resume"}, "--resume needs TLS"},
		{"tls in plaintext", []string{"echo", "--plaintext", "--tls", "1.3"}, "can't be used with --plaintext"},
		{"bad pin", []string{"echo", "--pin", "sha256//nope"}, "--pin:"},
		{"bad address", []string{"echo", "--insecure", "--server", "localhost"}, "want HOST:PORT"},
		{"depth in echo", []string{"echo", "--plaintext", "--depth", "4"}, "pipeline mode"},
		{"conns in scale", []string{"scale", "--plaintext", "--conns", "4"}, "give the connection counts with --points"},
		{"points in echo", []string{"echo", "--plaintext", "--points", "4"}, "are for the scale mode, not echo"},
		{"points decreasing", []string{"scale", "--plaintext", "--points", "5,4"}, "points must increase: 4 after 5"},
		{"point zero", []string{"scale", "--plaintext", "--points", "0,4"}, "point 0 is not a positive number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := runCmd(t, tt.args...)
			if code != cli.ExitUsage || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit code %d, stderr:\n%s\nwant %d and %q", code, stderr, cli.ExitUsage, tt.want)
			}
		})
	}
}

// Issue 18: the scaling run measures each point, with the server's figures
// from --pid, and its connections keep sending ECHOs while the next
// point's open.
func TestBenchScale(t *testing.T) {
	srv := mustServe(t, false)
	args := []string{"scale", "--server", srv.addr, "--ca", srv.caFile, "--points", "3,8", "--interval", "50ms",
		"--duration", "500ms", "--settle", "1ms", "--json"}
	linux := runtime.GOOS == "linux"
	if linux {
		args = append(args, "--pid", strconv.Itoa(os.Getpid()))
	}
	stdout, stderr, code := runCmd(t, args...)
	if code != 0 {
		t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, stdout)
	}
	if rep.Mode != bench.ModeScale || rep.Conns != 8 || rep.Held != 8 || rep.Errors != 0 || rep.Interval != "50ms" {
		t.Errorf("got mode %s, %d conns, %d held, %d errors, interval %q; want scale, 8, 8, 0, 50ms", rep.Mode, rep.Conns, rep.Held, rep.Errors, rep.Interval)
	}
	if len(rep.Points) != 2 {
		t.Fatalf("got %d points, want 2: %+v", len(rep.Points), rep.Points)
	}
	var echoes uint64
	for i, want := range []struct{ conns, opened int }{{3, 3}, {8, 5}} {
		p := rep.Points[i]
		if p.Conns != want.conns || p.Held != want.conns || p.Opened != want.opened || p.Errors != 0 {
			t.Errorf("point %d: got %d conns, %d held, %d opened, %d errors; want %d, %d, %d, 0", i, p.Conns, p.Held, p.Opened, p.Errors, want.conns, want.conns, want.opened)
		}
		if p.Handshake.Count != uint64(want.opened) || p.Handshake.P99 <= 0 {
			t.Errorf("point %d: handshake latency %+v, want %d timed", i, p.Handshake, want.opened)
		}
		// Every connection sends every 50 ms for 500 ms: about 10 each.
		if min := uint64(want.conns * 5); p.Echo.Count < min || p.Echo.P99 <= 0 {
			t.Errorf("point %d: ECHO latency %+v, want at least %d timed", i, p.Echo, min)
		}
		echoes += p.Echo.Count
		if linux && (p.Server == nil || p.Server.RSS <= 0 || p.Server.FDs <= 0) {
			t.Errorf("point %d: server figures %+v with --pid", i, p.Server)
		}
	}
	if uint64(rep.Ops) != echoes || rep.Latency.Count != echoes {
		t.Errorf("report: %d ops, %d timed; want the points' %d ECHOs", rep.Ops, rep.Latency.Count, echoes)
	}
	text, _, code := runCmd(t, "scale", "--server", srv.addr, "--ca", srv.caFile, "--points", "1,2", "--interval", "50ms", "--duration", "100ms", "--settle", "1ms")
	if code != 0 {
		t.Fatalf("text run: exit code %d", code)
	}
	for _, want := range []string{"scale: 1, 2 connections, each sending an ECHO of 64 bytes every 50ms", "conns     held   open p99"} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
}

func TestBenchMissingCAFile(t *testing.T) {
	_, stderr, code := runCmd(t, "echo", "--ca", filepath.Join(t.TempDir(), "nope.crt"))
	if code != cli.ExitFailure || !strings.Contains(stderr, "reading the CA file") || !strings.Contains(stderr, "nope.crt") {
		t.Errorf("exit code %d, stderr:\n%s", code, stderr)
	}
}

func TestProgressLine(t *testing.T) {
	got := progressLine(bench.ModeEcho, bench.Progress{Phase: "running", Ops: 5000, Elapsed: 2 * time.Second, Done: 0.5})
	want := "echo running    [===============               ]  50% 5000 ops 2500/s, 0 errors"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestNotATerminalDrawsNothing(t *testing.T) {
	var buf bytes.Buffer
	b, err := bench.New(bench.Options{Mode: bench.ModeEcho, Addr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	startProgress(&buf, b, bench.ModeEcho)()
	if buf.Len() != 0 {
		t.Errorf("drew %q on a buffer, want nothing", buf.String())
	}
}
