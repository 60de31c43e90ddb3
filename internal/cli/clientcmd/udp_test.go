package clientcmd

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/cli/servercmd"
	"github.com/spacecaptain/spacecaptain/pki"
)

// startDTLSServer runs sc-server --dtls in process with a fresh default
// layout: TLS on TCP and DTLS on UDP, on the same port.
func startDTLSServer(t *testing.T) *testServer {
	t.Helper()
	ts := &testServer{log: &syncBuffer{}, reload: make(chan os.Signal), reloaded: make(chan struct{}, 16)}
	res, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: filepath.Join(t.TempDir(), "certs")})
	if err != nil {
		t.Fatal(err)
	}
	ts.layout = res.Layout
	listening, dtlsListening := make(chan net.Addr, 1), make(chan net.Addr, 1)
	cmd := servercmd.NewRootCmd(servercmd.Env{
		Getenv:        func(string) string { return "" },
		Reload:        ts.reload,
		Reloaded:      func() { ts.reloaded <- struct{}{} },
		Listening:     func(a net.Addr) { listening <- a },
		DTLSListening: func(a net.Addr) { dtlsListening <- a },
	})
	cmd.SetArgs([]string{"--listen", "127.0.0.1:0", "--dtls", "--cert", ts.layout.ServerCert, "--key", ts.layout.ServerKey})
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
	if u := (<-dtlsListening).String(); u != ts.addr {
		t.Fatalf("DTLS on %s, TCP on %s: want one HOST:PORT for both", u, ts.addr)
	}
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("sc-server exited with %d:\n%s", code, ts.log)
		}
	})
	return ts
}

// Every protocol command speaks DTLS with --udp, trusting by pin or CA.
func TestUDPCommands(t *testing.T) {
	ts := startDTLSServer(t)
	pin := ts.pin(t).String()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"echo", "hello", "--pin", pin}, "hello\n"},
		{[]string{"reverse", "hello", "--ca", ts.layout.CACert}, "olleh\n"},
		{[]string{"keys", "--pin", pin}, "current " + pin + "\nnext " + ts.nextPin(t).String() + "\nverified: its key is one of the --pin values\n"},
	} {
		r := mustRun(t, "", append(tt.args, "--udp", "--server", ts.addr)...)
		if r.stdout != tt.want {
			t.Errorf("sc-client %s --udp: stdout %q, want %q", strings.Join(tt.args, " "), r.stdout, tt.want)
		}
	}
	r := mustRun(t, "", "time", "--udp", "--server", ts.addr, "--pin", pin)
	if len(r.stdout) != len("2006-01-02T15:04:05Z\n") {
		t.Errorf("time --udp: %q", r.stdout)
	}
	r = mustRun(t, "a\nb\n", "chat", "--udp", "--server", ts.addr, "--pin", pin)
	if !strings.Contains(r.stdout, "a") || !strings.Contains(r.stdout, "b") {
		t.Errorf("chat --udp: %q", r.stdout)
	}
	// The same exit codes as over TCP.
	other := ts.nextPin(t).String()
	if r := run(t, "", false, "echo", "x", "--udp", "--server", ts.addr, "--pin", other); r.code != ExitKeyMismatch {
		t.Errorf("a wrong pin over DTLS: exit %d, want %d\n%s", r.code, ExitKeyMismatch, r.stderr)
	}
	otherCA, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: filepath.Join(t.TempDir(), "other")})
	if err != nil {
		t.Fatal(err)
	}
	if r := run(t, "", false, "echo", "x", "--udp", "--server", ts.addr, "--ca", otherCA.Layout.CACert); r.code != ExitUntrusted {
		t.Errorf("another CA over DTLS: exit %d, want %d\n%s", r.code, ExitUntrusted, r.stderr)
	}
	if r := run(t, "", false, "echo", "x", "--udp", "--plaintext"); r.code != cli.ExitUsage {
		t.Errorf("--udp --plaintext: exit %d, want %d", r.code, cli.ExitUsage)
	}
}

// Trust on first use over DTLS records the key and the announced next key
// in the same known hosts entry as TCP (HOST:PORT): a key learned over one
// transport is trusted over the other, and a rollover learned over UDP
// passes over TCP.
func TestUDPTrustOnFirstUseSharedWithTCP(t *testing.T) {
	ts := startDTLSServer(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	r := mustRun(t, "", "echo", "first", "--udp", "--server", ts.addr, "--known-hosts", kh)
	if !strings.Contains(r.stderr, "trusting "+ts.addr+" on first use") {
		t.Errorf("first use over DTLS not reported:\n%s", r.stderr)
	}
	e, ok := lookup(t, kh, ts.addr)
	if !ok {
		t.Fatalf("not recorded:\n%s", readFile(t, kh))
	}
	cur, backups := pinsOf(e)
	if !cur.Equal(ts.pin(t)) || len(backups) != 1 || !backups[0].Equal(ts.nextPin(t)) {
		t.Errorf("recorded %v %v, want %v and the announced %v", cur, backups, ts.pin(t), ts.nextPin(t))
	}
	r = mustRun(t, "", "echo", "tcp", "--server", ts.addr, "--known-hosts", kh)
	if r.stdout != "tcp\n" || strings.Contains(r.stderr, "first use") {
		t.Errorf("over TCP with the key learned over DTLS: %q %q", r.stdout, r.stderr)
	}
	_, promoted, next := ts.rollover(t)
	r = mustRun(t, "", "echo", "after", "--udp", "--server", ts.addr, "--known-hosts", kh)
	if !strings.Contains(r.stderr, "moved to its next key") {
		t.Errorf("the rollover over DTLS is not reported:\n%s", r.stderr)
	}
	e, _ = lookup(t, kh, ts.addr)
	cur, backups = pinsOf(e)
	if !cur.Equal(promoted) || len(backups) != 1 || !backups[0].Equal(next) {
		t.Errorf("after the rollover: %v %v, want %v and %v", cur, backups, promoted, next)
	}
	mustRun(t, "", "echo", "tcp again", "--server", ts.addr, "--known-hosts", kh)
}

// The first-use prompt fetches the key over DTLS with --udp.
func TestUDPPrompt(t *testing.T) {
	ts := startDTLSServer(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	r := run(t, "y\nafter the answer\n", true, "chat", "--udp", "--server", ts.addr, "--known-hosts", kh)
	if r.code != 0 || r.stdout != "after the answer\n" || !strings.Contains(r.stderr, ts.pin(t).String()) || !strings.Contains(r.stderr, "[y/N]") {
		t.Fatalf("exit %d, stdout %q\n%s", r.code, r.stdout, r.stderr)
	}
	if _, ok := lookup(t, kh, ts.addr); !ok {
		t.Error("not recorded after yes")
	}
}
