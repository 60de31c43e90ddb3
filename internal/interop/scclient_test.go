package interop

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pki"
)

// The README's quick start, on loopback: sc-server on a fresh directory
// makes certs/, then sc-client echo hello --ca certs/ca.crt (or --pin with
// the pin sc-server printed) prints hello.
func TestQuickStart(t *testing.T) {
	dir := t.TempDir()
	srv := startSCServer(t, dir)
	out, _ := mustSCClient(t, dir, "echo", "hello", "--server", srv.Addr, "--ca", "certs/ca.crt")
	if out != "hello\n" {
		t.Errorf("with --ca: got %q, want hello", out)
	}
	out, _ = mustSCClient(t, dir, "echo", "hello", "--server", srv.Addr, "--pin", srv.Pin, "--pin", srv.NextPin)
	if out != "hello\n" {
		t.Errorf("with --pin: got %q, want hello", out)
	}
}

// sc-client against sc-server, over TLS (TLS 1.2 and 1.3 server minimums)
// and in plaintext: every message type, the NUL-terminated form, and
// chat's 1,000 pipelined lines coming back in order.
func TestSCClientAgainstSCServer(t *testing.T) {
	dir := t.TempDir()
	tlsSrv := startSCServer(t, dir)
	tls13 := startSCServer(t, dir, "--min-tls", "1.3")
	plain := startSCServer(t, t.TempDir(), "--plaintext")
	lines := filepath.Join(t.TempDir(), "lines")
	var in, want strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&in, "line %d\n", i)
		fmt.Fprintf(&want, "%s\n", reverse(fmt.Sprintf("line %d", i)))
	}
	if err := os.WriteFile(lines, []byte(in.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		name  string
		addr  string
		trust []string
	}{
		{"TLS", tlsSrv.Addr, []string{"--ca", "certs/ca.crt"}},
		{"TLS 1.3 only", tls13.Addr, []string{"--pin", tls13.Pin}},
		{"plaintext", plain.Addr, []string{"--plaintext"}},
	} {
		t.Run(m.name, func(t *testing.T) {
			args := func(a ...string) []string { return append(append(a, "--server", m.addr), m.trust...) }
			for _, tt := range []struct {
				args []string
				want string
			}{
				{args("echo", "hello", "captain"), "hello captain\n"},
				{args("reverse", "añb€😀"), "😀€bña\n"},
				{args("echo", "hi", "--nul"), "hi\n"},
				{args("reverse", "hi", "--nul"), "ih\n"},
			} {
				if out, _ := mustSCClient(t, dir, tt.args...); out != tt.want {
					t.Errorf("sc-client %s: got %q, want %q", strings.Join(tt.args, " "), out, tt.want)
				}
			}
			out, _ := mustSCClient(t, dir, args("time")...)
			if _, err := time.Parse(proto.TimeLayout, strings.TrimSpace(out)); err != nil {
				t.Errorf("time: %v", err)
			}
			keysOut, errOut, code := scClient(t, dir, "", args("keys")...)
			if m.name == "plaintext" {
				if code != 6 {
					t.Errorf("keys in plaintext: exit %d, want 6 (the server's ERROR)\n%s", code, errOut)
				}
			} else if srv := map[string]*scServer{tlsSrv.Addr: tlsSrv, tls13.Addr: tls13}[m.addr]; !strings.HasPrefix(keysOut, "current "+srv.Pin+"\nnext "+srv.NextPin+"\nverified: ") {
				t.Errorf("keys: got %q (exit %d)", keysOut, code)
			}
			out, errOut, code = runFile(t, dir, lines, bin(t, "sc-client"), args("chat", "--type", "reverse")...)
			if code != 0 || out != want.String() {
				t.Errorf("chat of 1,000 lines: exit %d, %d bytes of output (want %d), in order: %v\n%s",
					code, len(out), want.Len(), out == want.String(), errOut)
			}
		})
	}
}

// 1,000 frames in one write to the real sc-server come back in order, over
// TLS and in plaintext (the protocol library's Send/Flush: one Write call).
func TestPipelinedOneWrite(t *testing.T) {
	dir := t.TempDir()
	tlsSrv := startSCServer(t, dir)
	plain := startSCServer(t, t.TempDir(), "--plaintext")
	ca, err := pki.ReadCertificateFile(filepath.Join(dir, "certs", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, m := range []struct {
		name string
		addr string
		cfg  *tls.Config
	}{
		{"TLS 1.2", tlsSrv.Addr, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12}},
		{"TLS 1.3", tlsSrv.Addr, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}},
		{"plaintext", plain.Addr, nil},
	} {
		t.Run(m.name, func(t *testing.T) {
			c, err := client.Dial(context.Background(), m.addr, client.Options{TLSConfig: m.cfg})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			types := []proto.Type{proto.Echo, proto.Reverse, proto.Time}
			for i := range 1000 {
				if err := c.Send(types[i%3], []byte(strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			for i := range 1000 {
				f, err := c.Receive()
				if err != nil {
					t.Fatalf("reply %d: %v", i, err)
				}
				s := strconv.Itoa(i)
				ok := f.Type == types[i%3]
				switch f.Type {
				case proto.Echo:
					ok = ok && string(f.Body) == s
				case proto.Reverse:
					ok = ok && string(f.Body) == reverse(s)
				case proto.Time:
					_, perr := time.Parse(proto.TimeLayout, string(f.Body))
					ok = ok && perr == nil
				}
				if !ok {
					t.Fatalf("reply %d: got (%v, %q): out of order or wrong", i, f.Type, f.Body)
				}
			}
		})
	}
}

// reverse reverses an ASCII string.
func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}
