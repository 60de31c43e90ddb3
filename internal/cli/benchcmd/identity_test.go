package benchcmd

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/spacecaptain/spacecaptain/internal/bench"
	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// admissions records what a client-authenticating server decided.
type admissions struct {
	mu       sync.Mutex
	admitted map[string]int // by client pin
	refused  map[string]int // by refusal reason
}

func (a *admissions) counts() (admitted, refused map[string]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	admitted, refused = map[string]int{}, map[string]int{}
	for k, v := range a.admitted {
		admitted[k] = v
	}
	for k, v := range a.refused {
		refused[k] = v
	}
	return admitted, refused
}

// mustServeClientAuth serves as sc-server --client-auth require
// --client-allow does: any certificate asked for, the allow list of
// allowFile deciding in VerifyConnection (resumed sessions included).
func mustServeClientAuth(t *testing.T, allowFile string) (*testServer, *admissions) {
	t.Helper()
	v, err := pinning.NewClientVerifier(pinning.ClientVerifierOptions{Mode: pinning.ClientAuthRequire, AllowFile: allowFile})
	if err != nil {
		t.Fatal(err)
	}
	a := &admissions{admitted: map[string]int{}, refused: map[string]int{}}
	ts := mustServeWith(t, false, func(o *server.Options) {
		o.TLSConfig.ClientAuth = tls.RequestClientCert
		o.TLSConfig.VerifyConnection = func(cs tls.ConnectionState) error {
			err := v.VerifyConnection(cs)
			a.mu.Lock()
			defer a.mu.Unlock()
			var ce *pinning.ClientError
			switch {
			case err == nil:
				a.admitted[v.Identify(cs).Pin.String()]++
			case errors.As(err, &ce):
				a.refused[ce.Reason]++
			default:
				a.refused[err.Error()]++
			}
			return err
		}
	})
	return ts, a
}

// mustIdentity writes a P-256 identity key (mode 0600) and an allow list
// naming it, and returns their paths and the key's pin.
func mustIdentity(t *testing.T) (keyFile, allowFile, pin string) {
	t.Helper()
	dir := t.TempDir()
	key, err := pki.GenerateKey(pki.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(dir, "bench.key")
	if err := pki.WriteKeyFile(keyFile, key, pki.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	pin = cli.PinOfKey(key).String()
	allowFile = filepath.Join(dir, "allow")
	if err := os.WriteFile(allowFile, []byte(pin+" name=bench\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return keyFile, allowFile, pin
}

// TestBenchIdentity runs the modes with --identity against a server that
// requires a client certificate on its allow list: the identity is
// presented and admitted on every handshake, resumed ones included, and
// the same runs without it are refused.
func TestBenchIdentity(t *testing.T) {
	keyFile, allowFile, pin := mustIdentity(t)
	srv, adm := mustServeClientAuth(t, allowFile)
	tests := []struct {
		name     string
		args     []string
		wantMode bench.Mode
		wantOps  int64
		resumed  bool
	}{
		{"full handshakes", []string{"handshake", "--tls", "1.3", "--conns", "2", "--count", "12"}, bench.ModeHandshake, 12, false},
		{"resumed handshakes", []string{"handshake", "--tls", "1.3", "--resume", "--conns", "1", "--count", "8"}, bench.ModeHandshake, 8, true},
		{"resumed handshakes, TLS 1.2", []string{"handshake", "--tls", "1.2", "--resume", "--conns", "1", "--count", "8"}, bench.ModeHandshake, 8, true},
		{"echo", []string{"echo", "--conns", "3", "--count", "60"}, bench.ModeEcho, 60, false},
		{"idle", []string{"idle", "--conns", "10", "--duration", "1ms", "--settle", "1ms"}, bench.ModeIdle, 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := adm.counts()
			args := append(tt.args, "--server", srv.addr, "--pin", srv.pin, "--identity", keyFile, "--json")
			stdout, stderr, code := runCmd(t, args...)
			if code != 0 {
				t.Fatalf("exit code %d, want 0; stderr:\n%s", code, stderr)
			}
			var rep bench.Report
			if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
				t.Fatalf("stdout is not a JSON report: %v\n%s", err, stdout)
			}
			if rep.Mode != tt.wantMode || rep.Ops != tt.wantOps || rep.Errors != 0 {
				t.Errorf("got mode %s, %d ops, %d errors %q; want %s, %d, 0", rep.Mode, rep.Ops, rep.Errors, rep.ErrorSamples, tt.wantMode, tt.wantOps)
			}
			if tt.resumed && rep.Resumed < 0.5 {
				t.Errorf("resumed fraction %.2f, want most handshakes resumed", rep.Resumed)
			}
			after, refused := adm.counts()
			if n := after[pin] - before[pin]; n < int(tt.wantOps) && tt.wantMode == bench.ModeHandshake || n < 1 {
				t.Errorf("the server admitted the identity %d times in this run, want at least one a connection (%d)", n, tt.wantOps)
			}
			if len(after) != 1 || len(refused) != 0 {
				t.Errorf("admitted %v, refused %v; want only %s admitted", after, refused, pin)
			}
		})
	}

	// Without --identity the same server refuses every handshake.
	for _, mode := range []string{"handshake", "echo"} {
		t.Run(mode+" without an identity", func(t *testing.T) {
			_, before := adm.counts()
			_, stderr, code := runCmd(t, mode, "--tls", "1.3", "--conns", "1", "--count", "3", "--server", srv.addr, "--pin", srv.pin, "--json")
			if code != cli.ExitFailure {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, cli.ExitFailure, stderr)
			}
			_, after := adm.counts()
			if after[pinning.RefusedNoClientCert] <= before[pinning.RefusedNoClientCert] {
				t.Errorf("refusals %v (before %v): want the server to refuse a client with no certificate", after, before)
			}
		})
	}
}

func TestBenchIdentityErrors(t *testing.T) {
	keyFile, _, _ := mustIdentity(t)
	open := filepath.Join(t.TempDir(), "open.key")
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(open, data, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
		code int
	}{
		{"plaintext", []string{"echo", "--plaintext", "--identity", keyFile}, "[identity plaintext]", cli.ExitUsage},
		{"udp", []string{"echo", "--udp", "--insecure", "--identity", keyFile}, "[identity udp]", cli.ExitUsage},
		{"missing", []string{"echo", "--insecure", "--identity", filepath.Join(t.TempDir(), "nope.key")}, "reading the identity", cli.ExitFailure},
		{"readable by others", []string{"echo", "--insecure", "--identity", open}, "reading the identity", cli.ExitFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := runCmd(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit code %d, stderr:\n%s\nwant %d and %q", code, stderr, tt.code, tt.want)
			}
		})
	}
}
