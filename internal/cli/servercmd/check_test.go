package servercmd

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// --check on a usable layout exits 0 and reports what it found, without
// listening: the --listen and --metrics-listen ports are taken by another
// socket, which would make a start fail.
func TestCheckOK(t *testing.T) {
	l := mustInit(t)
	busy, busyMetrics := mustListen(t), mustListen(t)
	tickets := filepath.Join(t.TempDir(), "tickets")
	if err := pki.RotateTicketKeyFile(tickets, pki.TicketKeyFileOptions{}); err != nil {
		t.Fatal(err)
	}
	listening := false
	env := Env{Listening: func(net.Addr) { listening = true }, MetricsListening: func(net.Addr) { listening = true }}
	code, out, errOut := runCmd(t, env, append(layoutArgs(l), "--check", "--listen", busy.Addr().String(),
		"--metrics-listen", busyMetrics.Addr().String(), "--ticket-keys", tickets)...)
	if code != 0 {
		t.Fatalf("exit %d, want 0\n%s", code, errOut)
	}
	if listening {
		t.Error("--check listened")
	}
	leaf, _ := pki.ReadCertificateFile(l.ServerCert)
	next, _ := pinning.ReadPinFile(l.NextKey)
	for _, want := range []string{
		"configuration OK",
		"serial " + pki.SerialHex(leaf.SerialNumber),
		pinning.PinOf(leaf).String(),
		"mode 0600",
		"pin " + next.String(),
		"signed by " + l.CAKey,
		tickets + ": 1 keys",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// The per-source limit flags reach the server core's options: their
// defaults, values, and 0 for off (issue 7), as --check reports them.
func TestSourceLimitFlags(t *testing.T) {
	l := mustInit(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"defaults", nil, "10000 connections; per client address 1000 connections, 50/s handshakes"},
		{"values", []string{"--source-max-conns", "7", "--source-handshake-rate", "0.5"}, "per client address 7 connections, 0.5/s handshakes"},
		{"off", []string{"--source-max-conns=0", "--source-handshake-rate=0"}, "per client address off connections, off handshakes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, Env{}, append(append(layoutArgs(l), "--check"), tt.args...)...)
			if code != 0 {
				t.Fatalf("exit %d, want 0\n%s", code, errOut)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}

// --proxy-protocol-from takes CIDRs and bare addresses, comma-separated
// and repeated (issue 8); --check reports them.
func TestProxyProtocolFlag(t *testing.T) {
	l := mustInit(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"default", nil, "off (--proxy-protocol-from)"},
		{"list", []string{"--proxy-protocol-from", "10.0.0.5, fd00::/8", "--proxy-protocol-from", "192.168.1.7/24,::1"},
			"required from 10.0.0.5/32,fd00::/8,192.168.1.0/24,::1/128"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, Env{}, append(append(layoutArgs(l), "--check"), tt.args...)...)
			if code != 0 {
				t.Fatalf("exit %d, want 0\n%s", code, errOut)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}

// --check fails (exit 1, or 2 for flags) with a message naming the
// problem, for each thing a start would refuse, and makes nothing.
func TestCheckFails(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, l pki.Layout) []string // extra args
		code  int
		want  string
	}{
		{"missing layout", func(t *testing.T, l pki.Layout) []string {
			dir := filepath.Join(t.TempDir(), "certs")
			return []string{"--cert", filepath.Join(dir, "server.crt"), "--key", filepath.Join(dir, "server.key")}
		}, 1, "do not exist"},
		{"key only", func(t *testing.T, l pki.Layout) []string {
			mustRemove(t, l.ServerCert)
			return nil
		}, 1, "exists but its certificate"},
		{"key URI without its certificate", func(t *testing.T, l pki.Layout) []string {
			return []string{"--cert", filepath.Join(t.TempDir(), "certs", "server.crt"), "--key", "pkcs11:module-path=/nonexistent/libnone.so;token=sc;object=sc-server;pin-value=4711"}
		}, 1, "of the token key pkcs11:module-path=/nonexistent/libnone.so;token=sc;object=sc-server does not exist"},
		{"key readable by others", func(t *testing.T, l pki.Layout) []string {
			if err := os.Chmod(l.ServerKey, 0o644); err != nil {
				t.Fatal(err)
			}
			return nil
		}, 1, "others may read it; fix: chmod 600"},
		{"mismatched key", func(t *testing.T, l pki.Layout) []string {
			copyFile(t, l.NextKey, l.ServerKey)
			return nil
		}, 1, "does not match"},
		{"expired", func(t *testing.T, l pki.Layout) []string {
			return nil
		}, 1, "sc-cert rotate"}, // run with a clock 200 days on, below
		{"truncated certificate", func(t *testing.T, l pki.Layout) []string {
			b, _ := os.ReadFile(l.ServerCert)
			if err := os.WriteFile(l.ServerCert, b[:len(b)/2], 0o644); err != nil {
				t.Fatal(err)
			}
			return nil
		}, 1, "server.crt"},
		{"bad next key", func(t *testing.T, l pki.Layout) []string {
			if err := os.WriteFile(l.NextKey, []byte("garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
			return nil
		}, 1, "next key"},
		{"bad ticket keys", func(t *testing.T, l pki.Layout) []string {
			f := filepath.Join(t.TempDir(), "tickets")
			if err := os.WriteFile(f, []byte("not hex\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{"--ticket-keys", f}
		}, 1, "--ticket-keys"},
		{"missing ticket keys", func(t *testing.T, l pki.Layout) []string {
			return []string{"--ticket-keys", filepath.Join(t.TempDir(), "none")}
		}, 1, "sc-cert ticket-keys"},
		{"small RSA key", func(t *testing.T, l pki.Layout) []string {
			key, err := rsa.GenerateKey(rand.Reader, 1024)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := pki.CreateCertificate(key.Public(), pki.CertOptions{IssuerKey: key})
			if err != nil {
				t.Fatal(err)
			}
			mustRemove(t, l.ServerKey)
			if err := pki.WriteKeyFile(l.ServerKey, key, pki.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := pki.WriteCertificatesFile(l.ServerCert, []*x509.Certificate{cert}, pki.WriteOptions{Overwrite: true}); err != nil {
				t.Fatal(err)
			}
			return nil
		}, 1, "RSA 1024"},
		{"metrics on the game port", func(t *testing.T, l pki.Layout) []string {
			return []string{"--listen", ":4242", "--metrics-listen", "127.0.0.1:4242"}
		}, 2, "--metrics-listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustInit(t)
			extra := tt.setup(t, l)
			env := Env{}
			if tt.name == "expired" {
				env.Now = func() time.Time { return time.Now().Add(200 * 24 * time.Hour) }
			}
			before := dirNames(t, filepath.Dir(l.ServerCert))
			code, out, errOut := runCmd(t, env, append(append(layoutArgs(l), "--check"), extra...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr does not say %q:\n%s", tt.want, errOut)
			}
			if strings.Contains(out, "configuration OK") {
				t.Errorf("stdout says OK:\n%s", out)
			}
			if after := dirNames(t, filepath.Dir(l.ServerCert)); after != before {
				t.Errorf("--check changed the directory: %s, was %s", after, before)
			}
			for i, a := range extra {
				if a == "--cert" {
					if _, err := os.Stat(filepath.Dir(extra[i+1])); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("--check made %s", filepath.Dir(extra[i+1]))
					}
				}
			}
		})
	}
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func mustRemove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// dirNames lists a directory's entries and sizes, to see that nothing was
// made or changed.
func dirNames(t *testing.T, dir string) string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range es {
		fi, _ := e.Info()
		b.WriteString(e.Name())
		if fi != nil {
			b.WriteString("=" + fi.ModTime().String())
		}
		b.WriteString(" ")
	}
	return b.String()
}
