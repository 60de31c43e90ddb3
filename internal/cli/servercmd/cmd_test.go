package servercmd

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// Bad flags are usage errors (exit 2) naming the flag, before anything is
// created or bound.
func TestFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"min tls 1.1", []string{"--min-tls", "1.1"}, "--min-tls"},
		{"log format", []string{"--log-format", "xml"}, "--log-format"},
		{"log level", []string{"--log-level", "loud"}, "--log-level"},
		{"listen without port", []string{"--listen", "localhost"}, "--listen"},
		{"plaintext with cert", []string{"--plaintext", "--cert", "x.crt"}, "plaintext"},
		{"plaintext with min tls", []string{"--plaintext", "--min-tls", "1.3"}, "plaintext"},
		{"max message zero", []string{"--max-message", "0"}, "--max-message"},
		{"max message too large", []string{"--max-message", "999999999"}, "--max-message"},
		{"max conns zero", []string{"--max-conns", "0"}, "--max-conns"},
		{"source max conns negative", []string{"--source-max-conns", "-1"}, "--source-max-conns"},
		{"source handshake rate negative", []string{"--source-handshake-rate", "-5"}, "--source-handshake-rate"},
		{"source handshake rate not a number", []string{"--source-handshake-rate", "NaN"}, "--source-handshake-rate"},
		{"proxy protocol from a bad prefix", []string{"--proxy-protocol-from", "10.0.0.0/33"}, "--proxy-protocol-from"},
		{"proxy protocol from a host name", []string{"--proxy-protocol-from", "lb.example"}, "lb.example"},
		{"handshake timeout zero", []string{"--handshake-timeout", "0s"}, "--handshake-timeout"},
		{"shutdown timeout negative", []string{"--shutdown-timeout", "-1s"}, "--shutdown-timeout"},
		{"unknown engine", []string{"--engine", "threads"}, "--engine"},
		{"metrics listen without port", []string{"--metrics-listen", "localhost"}, "--metrics-listen"},
		{"metrics on the game port", []string{"--listen", ":4242", "--metrics-listen", "127.0.0.1:4242"}, "--metrics-listen"},
		{"metrics on the game port, any host", []string{"--listen", "127.0.0.1:4242", "--metrics-listen", ":4242"}, "--metrics-listen"},
		{"ticket key rotation zero", []string{"--ticket-key-rotation", "0s"}, "--ticket-key-rotation"},
		{"plaintext with ticket key rotation", []string{"--plaintext", "--ticket-key-rotation", "1h"}, "plaintext"},
		{"check with a bad flag", []string{"--check", "--max-conns", "0"}, "--max-conns"},
		{"unknown flag", []string{"--port", "1"}, "--port"},
		{"argument", []string{"serve"}, "serve"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := NewRootCmd(Env{})
			// Point the certificates at an empty directory: a usage error
			// must not get as far as creating them.
			cmd.SetArgs(append([]string{"--listen", "127.0.0.1:0"}, tt.args...))
			var out, errOut strings.Builder
			cmd.SetOut(&out)
			cmd.SetErr(&errOut)
			chdir(t, dir)
			code := cli.Main(context.Background(), cmd)
			if code != cli.ExitUsage {
				t.Errorf("exit code: got %d, want %d\nstderr: %s", code, cli.ExitUsage, errOut.String())
			}
			if !strings.Contains(errOut.String(), tt.want) {
				t.Errorf("stderr does not name %q:\n%s", tt.want, errOut.String())
			}
			if _, err := os.Stat(filepath.Join(dir, "certs")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a usage error created %s/certs", dir)
			}
		})
	}
}

// chdir changes the working directory for one (non-parallel) test.
func chdir(t *testing.T, dir string) {
	t.Helper()
	old, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chdir(old) })
}

// The first run on an empty directory makes the default layout, prints the
// pins and the sc-client commands, and serves every message type with the
// new certificate; KEYS announces the current and the next pin.
func TestFirstRunMakesLayoutAndServes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	l := pki.DefaultLayout(dir)
	r := startServer(t, Env{}, layoutArgs(l)...)

	for _, f := range []string{l.CACert, l.CAKey, l.ServerCert, l.ServerKey, l.NextKey} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("first run: %v", err)
		}
	}
	pin, err := pinning.ReadPinFile(l.ServerCert)
	if err != nil {
		t.Fatal(err)
	}
	next, err := pinning.ReadPinFile(l.NextKey)
	if err != nil {
		t.Fatal(err)
	}
	out := r.stdout.String()
	for _, want := range []string{pin.String(), next.String(), "sc-client echo hello --server " + r.addr + " --ca " + l.CACert,
		"--pin '" + pin.String() + "' --pin '" + next.String() + "'"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}

	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			c := mustDial(t, r.addr, caConfig(t, l, v))
			ctx := context.Background()
			for _, tt := range []struct {
				typ        proto.Type
				body, want string
			}{
				{proto.Echo, "hello", "hello"},
				{proto.Reverse, "hello\x00", "olleh\x00"},
				{proto.Keys, "", "current " + pin.String() + "\nnext " + next.String() + "\n"},
			} {
				got, err := c.Do(ctx, tt.typ, []byte(tt.body))
				if err != nil || string(got) != tt.want {
					t.Errorf("%v %q: got %q, %v; want %q", tt.typ, tt.body, got, err, tt.want)
				}
			}
			got, err := c.Do(ctx, proto.Time, nil)
			if _, perr := time.Parse(proto.TimeLayout, string(got)); err != nil || perr != nil {
				t.Errorf("TIME: got %q, %v", got, err)
			}
		})
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code after stop: got %d, want 0\n%s", code, r.stderr)
	}
}

// Only one of certificate and key present is refused, naming the missing
// one; nothing is created.
func TestRefusesHalfAPair(t *testing.T) {
	for _, remove := range []string{"cert", "key"} {
		t.Run("without "+remove, func(t *testing.T) {
			l := mustInit(t)
			missing := l.ServerCert
			if remove == "key" {
				missing = l.ServerKey
			}
			if err := os.Remove(missing); err != nil {
				t.Fatal(err)
			}
			code, _, errOut := runCmd(t, Env{}, append(layoutArgs(l), "--listen", "127.0.0.1:0")...)
			if code != cli.ExitFailure {
				t.Errorf("exit code: got %d, want 1", code)
			}
			if !strings.Contains(errOut, missing+" does not") {
				t.Errorf("the error does not name %s:\n%s", missing, errOut)
			}
			if _, err := os.Stat(missing); err == nil {
				t.Errorf("%s was created", missing)
			}
		})
	}
}

// runCmd runs sc-server to completion (for runs that fail at startup).
func runCmd(t *testing.T, env Env, args ...string) (int, string, string) {
	t.Helper()
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	cmd := NewRootCmd(env)
	cmd.SetArgs(args)
	var out, errOut strings.Builder
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := cli.Main(ctx, cmd)
	return code, out.String(), errOut.String()
}

// An expired certificate is refused at startup with the command that
// renews it on the same key.
func TestExpiredCertificate(t *testing.T) {
	l := mustInit(t)
	later := func() time.Time { return time.Now().Add(200 * 24 * time.Hour) }
	code, _, errOut := runCmd(t, Env{Now: later}, append(layoutArgs(l), "--listen", "127.0.0.1:0")...)
	if code != cli.ExitFailure || !strings.Contains(errOut, "sc-cert rotate") {
		t.Errorf("got exit %d and\n%s\nwant 1 and the sc-cert rotate hint", code, errOut)
	}
}

// An encrypted key needs its passphrase: from --key-password-file it
// serves; without any source (and no terminal) it fails fast naming the
// flag.
func TestEncryptedKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if _, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: dir, KeyPassphrase: []byte("correct horse")}); err != nil {
		t.Fatal(err)
	}
	l := pki.DefaultLayout(dir)
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("correct horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()

	code, _, errOut := runCmd(t, Env{Stdin: devnull}, append(layoutArgs(l), "--listen", "127.0.0.1:0")...)
	if code != cli.ExitFailure || !strings.Contains(errOut, "--key-password-file") {
		t.Errorf("without a passphrase: got exit %d and\n%s\nwant 1 and a hint naming --key-password-file", code, errOut)
	}

	r := startServer(t, Env{Stdin: devnull}, append(layoutArgs(l), "--key-password-file", pw)...)
	c := mustDial(t, r.addr, caConfig(t, l, 0))
	body, err := c.Do(context.Background(), proto.Keys, nil)
	next, _ := pinning.ReadPinFile(l.ServerCert)
	if err != nil || !strings.HasPrefix(string(body), "current "+next.String()) {
		t.Errorf("KEYS: got %q, %v", body, err)
	}
	if !strings.Contains(string(body), "\nnext ") {
		t.Errorf("KEYS does not announce the encrypted next key: %q", body)
	}
}

// Without a next key file KEYS announces the current pin alone.
func TestKeysWithoutNextKey(t *testing.T) {
	l := mustInit(t)
	if err := os.Remove(l.NextKey); err != nil {
		t.Fatal(err)
	}
	r := startServer(t, Env{}, layoutArgs(l)...)
	pin, _ := pinning.ReadPinFile(l.ServerCert)
	c := mustDial(t, r.addr, caConfig(t, l, 0))
	cur, next, err := c.Keys(context.Background())
	if err != nil || cur != pin.String() || len(next) != 0 {
		t.Errorf("KEYS: got %q, %q, %v; want %s alone", cur, next, err, pin)
	}
}

// A reload (SIGHUP) after sc-cert rotate --promote-next serves the new key
// and announces the new next key (the file watcher may have been first);
// a reload that fails keeps the old pair.
func TestReload(t *testing.T) {
	l := mustInit(t)
	r := startServer(t, Env{}, layoutArgs(l)...)
	promoted, _ := pinning.ReadPinFile(l.NextKey)

	if _, err := pki.Rotate(context.Background(), pki.RotateOptions{CertPath: l.ServerCert, PromoteNext: true}); err != nil {
		t.Fatal(err)
	}
	newNext, _ := pinning.ReadPinFile(l.NextKey)
	r.requestReload()
	c := mustDial(t, r.addr, caConfig(t, l, 0))
	cur, next, err := c.Keys(context.Background())
	if err != nil || cur != promoted.String() || len(next) != 1 || next[0] != newNext.String() {
		t.Errorf("after the reload: KEYS %q, %q, %v; want current %s, next %s", cur, next, err, promoted, newNext)
	}
	if !strings.Contains(r.stderr.String(), `msg="certificate reloaded"`) {
		t.Errorf("no reload in the log:\n%s", r.stderr)
	}

	// A broken certificate file: the reload fails, the pair stays.
	if err := os.WriteFile(l.ServerCert, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.requestReload()
	c = mustDial(t, r.addr, caConfig(t, l, 0))
	if cur, _, err := c.Keys(context.Background()); err != nil || cur != promoted.String() {
		t.Errorf("after a failed reload: KEYS current %q, %v; want %s still", cur, err, promoted)
	}
	if !strings.Contains(r.stderr.String(), "reload failed") {
		t.Errorf("the failed reload is not logged:\n%s", r.stderr)
	}
}

// The JSON log's startup record carries the stable keys operators grep
// for: address, engine, TLS versions, serial, expiry and pins.
func TestJSONStartupLog(t *testing.T) {
	l := mustInit(t)
	r := startServer(t, Env{}, append(layoutArgs(l), "--log-format", "json")...)
	var rec map[string]any
	sc := bufio.NewScanner(strings.NewReader(r.stderr.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("a log line is not JSON: %q: %v", sc.Text(), err)
		}
		if m["msg"] == "serving" {
			rec = m
		}
	}
	if rec == nil {
		t.Fatalf("no serving record in\n%s", r.stderr)
	}
	leaf, _ := pki.ReadCertificateFile(l.ServerCert)
	next, _ := pinning.ReadPinFile(l.NextKey)
	want := map[string]string{
		"addr": r.addr, "engine": server.Engines()[0], "tls_min": "TLS 1.2", "tls_max": "TLS 1.3",
		"serial": pki.SerialHex(leaf.SerialNumber), "not_after": leaf.NotAfter.UTC().Format(time.RFC3339),
		"pin": pinning.PinOf(leaf).String(), "next_pin": next.String(),
	}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("serving record %s: got %v, want %s", k, rec[k], v)
		}
	}
}

// --plaintext serves without TLS and says so loudly; KEYS has nothing to
// announce.
func TestPlaintext(t *testing.T) {
	dir := t.TempDir()
	chdir(t, dir)
	r := startServer(t, Env{}, "--plaintext")
	c := mustDial(t, r.addr, nil)
	if got, err := c.Do(context.Background(), proto.Echo, []byte("hi")); err != nil || string(got) != "hi" {
		t.Errorf("ECHO: got %q, %v", got, err)
	}
	var se *client.ServerError
	if _, _, err := c.Keys(context.Background()); !errors.As(err, &se) {
		t.Errorf("KEYS in plaintext: got %v, want an ERROR reply", err)
	}
	if !strings.Contains(r.stderr.String(), "level=WARN") || !strings.Contains(r.stderr.String(), "PLAINTEXT") {
		t.Errorf("no loud warning:\n%s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "certs")); err == nil {
		t.Error("--plaintext made certificates")
	}
}

// Stopping (SIGTERM) drains: an idle connection gets close_notify (a clean
// EOF, not a reset), a pipelined batch already sent is answered in full,
// and the exit code is 0.
func TestGracefulStop(t *testing.T) {
	l := mustInit(t)
	r := startServer(t, Env{}, layoutArgs(l)...)
	idle := mustDial(t, r.addr, caConfig(t, l, 0))
	busy := mustDial(t, r.addr, caConfig(t, l, 0))
	// A round trip on each makes sure both are past their handshakes.
	for _, c := range []*client.Conn{idle, busy} {
		if _, err := c.Do(context.Background(), proto.Echo, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	const n = 200
	for i := range n {
		if err := busy.Send(proto.Echo, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := busy.Flush(); err != nil {
		t.Fatal(err)
	}
	// The first reply proves the server has read (part of) the batch.
	_ = busy.SetDeadline(time.Now().Add(10 * time.Second))
	f, err := busy.Receive()
	if err != nil || f.Body[0] != 0 {
		t.Fatalf("first reply: %v, %v", f, err)
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code: got %d, want 0\n%s", code, r.stderr)
	}
	_ = idle.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.Receive(); !errors.Is(err, io.EOF) {
		t.Errorf("idle connection: got %v, want io.EOF (close_notify)", err)
	}
	got := 1
	for {
		f, err := busy.Receive()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d replies: %v, want replies then io.EOF", got, err)
		}
		if int(f.Body[0]) != got {
			t.Fatalf("reply %d out of order: %d", got, f.Body[0])
		}
		got++
	}
	if got != n {
		t.Errorf("got %d replies to the %d requests sent before the stop, want all", got, n)
	}
	if !strings.Contains(r.stderr.String(), "shutdown complete") {
		t.Errorf("the drain did not complete:\n%s", r.stderr)
	}
}

// The certificate files are watched: sc-cert rotate --promote-next is
// served without SIGHUP. (Polled with a deadline: the watcher debounces.)
func TestWatchServesRotation(t *testing.T) {
	l := mustInit(t)
	r := startServer(t, Env{}, layoutArgs(l)...)
	promoted, _ := pinning.ReadPinFile(l.NextKey)
	if _, err := pki.Rotate(context.Background(), pki.RotateOptions{CertPath: l.ServerCert, PromoteNext: true}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := mustDial(t, r.addr, caConfig(t, l, 0))
		cs, _ := c.ConnectionState()
		if pinning.PinOf(cs.PeerCertificates[0]).Equal(promoted) {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the promoted key was not served within 20s:\n%s", r.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two servers sharing a --ticket-keys file resume each other's sessions,
// in TLS 1.2 and 1.3.
func TestSharedTicketKeys(t *testing.T) {
	l := mustInit(t)
	keys := filepath.Join(t.TempDir(), "tickets")
	if err := pki.RotateTicketKeyFile(keys, pki.TicketKeyFileOptions{Keep: 1}); err != nil {
		t.Fatal(err)
	}
	a := startServer(t, Env{}, append(layoutArgs(l), "--ticket-keys", keys)...)
	b := startServer(t, Env{}, append(layoutArgs(l), "--ticket-keys", keys)...)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			cfg := caConfig(t, l, v)
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			if _, err := handshake(a.addr, cfg); err != nil {
				t.Fatal(err)
			}
			st, err := handshake(b.addr, cfg)
			if err != nil || !st.DidResume {
				t.Errorf("on the second server: resumed %v, %v; want a session from the first resumed", st.DidResume, err)
			}
		})
	}
}

// A server whose certificate is due renews it on the same key at start
// (--auto-renew, the default): a new serial is served, the pin is the
// same. With --auto-renew=false it only warns that the certificate will
// expire. (Polled with a deadline: renewal runs on its own goroutine.)
func TestAutoRenew(t *testing.T) {
	for _, renew := range []bool{true, false} {
		t.Run(fmt.Sprint("auto-renew=", renew), func(t *testing.T) {
			l := mustInit(t)
			old, err := pki.ReadCertificateFile(l.ServerCert)
			if err != nil {
				t.Fatal(err)
			}
			// 70 of 90 days in: past the two-thirds renewal point, and
			// within the 30-day expiry warning.
			later := func() time.Time { return time.Now().Add(70 * 24 * time.Hour) }
			r := startServer(t, Env{Now: later}, append(layoutArgs(l), fmt.Sprint("--auto-renew=", renew))...)
			cfg := caConfig(t, l, 0)
			cfg.Time = later
			served := func() *x509.Certificate {
				c := mustDial(t, r.addr, cfg)
				defer c.Close()
				cs, _ := c.ConnectionState()
				return cs.PeerCertificates[0]
			}
			deadline := time.Now().Add(20 * time.Second)
			if !renew {
				for !strings.Contains(r.stderr.String(), "will not be renewed") {
					if time.Now().After(deadline) {
						t.Fatalf("no expiry warning within 20s:\n%s", r.stderr)
					}
					time.Sleep(20 * time.Millisecond)
				}
				if leaf := served(); leaf.SerialNumber.Cmp(old.SerialNumber) != 0 {
					t.Error("renewed with --auto-renew=false")
				}
				return
			}
			for {
				leaf := served()
				if leaf.SerialNumber.Cmp(old.SerialNumber) != 0 {
					if !pinning.PinOf(leaf).Equal(pinning.PinOf(old)) {
						t.Error("the renewed certificate has another key")
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("not renewed within 20s:\n%s", r.stderr)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
