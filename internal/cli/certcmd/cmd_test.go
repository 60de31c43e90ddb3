package certcmd

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// run executes sc-cert in process and returns stdout, stderr and the exit
// code main would use.
func run(t *testing.T, env Env, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	root := NewRootCmd(env)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	code = cli.Main(context.Background(), root)
	return out.String(), errOut.String(), code
}

func TestFlagParsing(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"unknown flag", []string{"init", "--bogus"}, 2, "unknown flag: --bogus"},
		{"bad key type", []string{"create", "--key-type", "rsa-1024"}, 2, `invalid argument "rsa-1024" for "--key-type"`},
		{"bad duration", []string{"create", "--validity", "soon"}, 2, "invalid duration"},
		{"zero duration", []string{"create", "--validity", "0d"}, 2, "invalid duration"},
		{"bad time", []string{"create", "--not-after", "tomorrow"}, 2, "want RFC 3339"},
		{"validity and not-after", []string{"rotate", "--validity", "1d", "--not-after", "2030-01-01T00:00:00Z"}, 2, "[not-after validity]"},
		{"issuer cert without key", []string{"create", "--issuer-cert", "ca.crt"}, 2, "must all be set"},
		{"issuer key without cert", []string{"rotate", "--issuer-key", "ca.key"}, 2, "--issuer-key needs --issuer-cert"},
		{"same file", []string{"create", "--cert", filepath.Join(dir, "x"), "--key", filepath.Join(dir, "x")}, 2, "name the same file"},
		{"verify without cert", []string{"verify"}, 2, "which certificate? give it as the argument or with --cert"},
		{"dns without ca", []string{"verify", "--cert", "x", "--dns", "a"}, 2, "--dns needs --ca"},
		{"fingerprint format", []string{"fingerprint", "--format", "sha1", "x"}, 2, "want pin, pin-hex, base64, cert-sha256"},
		{"inspect args", []string{"inspect", "a", "b"}, 2, "want one FILE or HOST:PORT, got 2"},
		{"init takes no args", []string{"init", "extra"}, 2, "unknown command"},
		{"self-signed with CA flags", []string{"init", "--self-signed", "--ca-validity", "1y"}, 2, "none of the others"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := run(t, Env{}, tt.args...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("got code %d, stderr %q; want %d and %q", code, stderr, tt.wantCode, tt.wantErr)
			}
			if !strings.HasPrefix(stderr, "sc-cert: error: ") {
				t.Errorf("stderr %q: want it to start with sc-cert: error:", stderr)
			}
		})
	}
}

// Running init in process: the options reach pki (the key type, the names,
// the validity) and --json is valid JSON with the pins.
func TestInitInProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	now := time.Now()
	stdout, stderr, code := run(t, Env{Now: func() time.Time { return now }},
		"init", "--dir", dir, "--key-type", "ed25519", "--dns", "a.example", "--ip", "192.0.2.1", "--validity", "7d", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got initJSON
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	cert, err := pki.ReadCertificateFile(filepath.Join(dir, "server.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Pin != pinning.PinOf(cert).String() || got.NextPin == "" || got.NextPin == got.Pin {
		t.Errorf("pins: got %q and %q", got.Pin, got.NextPin)
	}
	if kt, _ := pki.KeyTypeOf(cert.PublicKey); kt != pki.KeyEd25519 || strings.Join(cert.DNSNames, ",") != "a.example" || len(cert.IPAddresses) != 1 {
		t.Errorf("certificate: %s %v %v", kt, cert.DNSNames, cert.IPAddresses)
	}
	if want := now.Add(7 * 24 * time.Hour).Truncate(time.Second); !cert.NotAfter.Equal(want) {
		t.Errorf("NotAfter: got %v, want %v", cert.NotAfter, want)
	}
}

// inspect and fingerprint of HOST:PORT fetch the chain over TLS without
// trusting it, over TLS 1.2 and 1.3.
func TestInspectServer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if _, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	l := pki.DefaultLayout(dir)
	pair, err := pki.LoadPair(l.ServerCert, l.ServerKey, pki.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantPin := pinning.PinOf(pair.Leaf()).String()
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*pair.TLSCertificate()}, MinVersion: v, MaxVersion: v})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						c.(*tls.Conn).Handshake()
						c.Close()
					}()
				}
			}()
			addr := ln.Addr().String()
			stdout, stderr, code := run(t, Env{}, "fingerprint", addr)
			if code != 0 || strings.TrimSpace(stdout) != wantPin {
				t.Errorf("fingerprint: got %q (exit %d, %s), want %s", stdout, code, stderr, wantPin)
			}
			stdout, stderr, code = run(t, Env{}, "inspect", "--json", addr)
			if code != 0 {
				t.Fatalf("inspect: exit %d: %s", code, stderr)
			}
			var got inspectJSON
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatal(err)
			}
			if got.TLS == nil || got.TLS.Version != tls.VersionName(v) || got.TLS.Verified || len(got.Certificates) != 1 || got.Certificates[0].Pin != wantPin {
				t.Errorf("inspect: got %+v", got)
			}
			stdout, _, _ = run(t, Env{}, "inspect", addr)
			if !strings.Contains(stdout, "not verified") {
				t.Errorf("inspect text does not say the chain is unverified:\n%s", stdout)
			}
		})
	}
	t.Run("nothing listening", func(t *testing.T) {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*pair.TLSCertificate()}})
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		_, stderr, code := run(t, Env{}, "inspect", addr)
		if code != 1 || !strings.Contains(stderr, "is a TLS server listening on") {
			t.Errorf("got exit %d, %q", code, stderr)
		}
	})
}

// TestGolden compares inspect's output for the fixture certificates (made
// by testdata/fixtures/gen.go, so dates and serials are fixed) with the
// golden files; go test -update rewrites them.
func TestGolden(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC) }
	keyFile := filepath.Join(t.TempDir(), "self.key")
	spelled, err := os.ReadFile(filepath.Join("testdata", "fixtures", "self.key.testing"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, bytes.ReplaceAll(spelled, []byte("TESTING KEY"), []byte("PRIVATE KEY")), 0o600); err != nil {
		t.Fatal(err)
	}
	inputs := map[string]string{
		"ca":    filepath.Join("testdata", "fixtures", "ca.pem"),
		"leaf":  filepath.Join("testdata", "fixtures", "leaf.pem"),
		"chain": filepath.Join("testdata", "fixtures", "chain.pem"),
		"self":  filepath.Join("testdata", "fixtures", "self.pem"),
		"key":   keyFile,
	}
	for name, path := range inputs {
		for _, asJSON := range []bool{false, true} {
			golden := filepath.Join("testdata", "golden", "inspect-"+name+".txt")
			args := []string{"inspect", filepath.ToSlash(path)}
			if asJSON {
				golden = strings.TrimSuffix(golden, ".txt") + ".json"
				args = append(args, "--json")
			}
			t.Run(filepath.Base(golden), func(t *testing.T) {
				if name == "key" && exeSuffix() != "" {
					t.Skip("the key's file mode is Unix-only")
				}
				stdout, stderr, code := run(t, Env{Now: now}, args...)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				// The key is copied to a temporary directory.
				got := strings.ReplaceAll(stdout, filepath.ToSlash(keyFile), "KEYFILE")
				if *update {
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test -update to create it)", err)
				}
				if got != string(want) {
					t.Errorf("inspect %s differs from %s (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", path, golden, got, want)
				}
			})
		}
	}
}
