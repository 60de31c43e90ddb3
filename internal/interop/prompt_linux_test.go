//go:build linux

package interop

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
)

// onPTY is a real command whose standard streams are a pseudo-terminal,
// its controlling terminal, as a person at a terminal runs it.
type onPTY struct {
	t      *testing.T
	cmd    *exec.Cmd
	master *os.File
	slave  *os.File // kept open to read the terminal's settings afterwards
	mu     sync.Mutex
	out    strings.Builder
	done   chan struct{}
	err    error
}

func startOnPTY(t *testing.T, dir string, env []string, name string, args ...string) *onPTY {
	t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	p := &onPTY{t: t, master: master, slave: slave, done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Dir = dir
	p.cmd.Env = env
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = slave, slave, slave
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := childproc.Start(p.cmd); err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		master.Close()
		slave.Close()
	})
	return p
}

func (p *onPTY) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitFor waits until the terminal shows s.
func (p *onPTY) waitFor(s string) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.output(), s) {
		if time.Now().After(deadline) {
			p.t.Fatalf("the terminal never showed %q:\n%s", s, p.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitCount waits until the terminal has shown s n times.
func (p *onPTY) waitCount(s string, n int) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(p.output(), s) < n {
		if time.Now().After(deadline) {
			p.t.Fatalf("the terminal did not show %q %d times:\n%s", s, n, p.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// typeLine types a line as a person does (the terminal turns the Enter
// into a newline).
func (p *onPTY) typeLine(s string) {
	p.t.Helper()
	if _, err := p.master.Write([]byte(s + "\r")); err != nil {
		p.t.Fatal(err)
	}
}

// exit waits for the command to end, within limit, and returns its exit
// code.
func (p *onPTY) exit(limit time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		p.t.Fatalf("still running %v later:\n%s", limit, p.output())
	}
	return exitCode(p.t, p.err)
}

// echoOn reports whether the terminal echoes again.
func (p *onPTY) echoOn() bool {
	p.t.Helper()
	tio, err := unix.IoctlGetTermios(int(p.slave.Fd()), unix.TCGETS)
	if err != nil {
		p.t.Fatal(err)
	}
	return tio.Lflag&unix.ECHO != 0
}

// encryptedLayout makes certs/ in dir with encrypted server keys.
func encryptedLayout(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command(bin(t, "sc-cert"), "init", "--encrypt-key")
	cmd.Dir = dir
	cmd.Env = append(environWithout("SC_KEY_PASSWORD"), "SC_KEY_PASSWORD=correct horse")
	if out, err := childproc.CombinedOutput(cmd); err != nil {
		t.Fatalf("sc-cert init --encrypt-key: %v\n%s", err, out)
	}
}

// Ctrl-C and SIGTERM at every prompt end the command at once with exit
// 130, the terminal's echo restored (issue 12: they were ignored, and
// sc-server --help promises 130). Under a real pseudo-terminal, so the
// prompt reads without echo and Ctrl-C is the terminal's.
func TestSignalAtPrompt(t *testing.T) {
	env := environWithout("SC_KEY_PASSWORD")
	interrupt := map[string]func(p *onPTY){
		"ctrl-c":  func(p *onPTY) { p.master.Write([]byte{3}) },
		"sigterm": func(p *onPTY) { p.cmd.Process.Signal(syscall.SIGTERM) },
	}
	for how, stop := range interrupt {
		t.Run("sc-server passphrase/"+how, func(t *testing.T) {
			dir := t.TempDir()
			encryptedLayout(t, dir)
			p := startOnPTY(t, dir, env, bin(t, "sc-server"), "--listen", "127.0.0.1:0")
			p.waitFor("Passphrase for")
			// The prompt is printed just before the read turns echo
			// off: wait for it to go off rather than look once.
			for deadline := time.Now().Add(5 * time.Second); p.echoOn(); {
				if time.Now().After(deadline) {
					t.Fatal("the prompt echoes")
				}
				time.Sleep(10 * time.Millisecond)
			}
			stop(p)
			if code := p.exit(10 * time.Second); code != 130 {
				t.Errorf("exit %d, want 130:\n%s", code, p.output())
			}
			if !p.echoOn() {
				t.Error("the terminal's echo was not restored")
			}
		})
		t.Run("sc-cert passphrase/"+how, func(t *testing.T) {
			dir := t.TempDir()
			encryptedLayout(t, dir)
			p := startOnPTY(t, dir, env, bin(t, "sc-cert"), "inspect", filepath.Join("certs", "server.key"))
			p.waitFor("Passphrase for")
			stop(p)
			if code := p.exit(10 * time.Second); code != 130 {
				t.Errorf("exit %d, want 130:\n%s", code, p.output())
			}
			if !p.echoOn() {
				t.Error("the terminal's echo was not restored")
			}
		})
		t.Run("sc-client trust question/"+how, func(t *testing.T) {
			dir := t.TempDir()
			srv := startSCServer(t, dir)
			kh := filepath.Join(dir, "known_hosts")
			p := startOnPTY(t, dir, env, bin(t, "sc-client"), "echo", "hi", "--server", srv.Addr, "--known-hosts", kh, "--tofu", "prompt")
			p.waitFor("[y/N]")
			stop(p)
			if code := p.exit(10 * time.Second); code != 130 {
				t.Errorf("exit %d, want 130:\n%s", code, p.output())
			}
			if _, err := os.Stat(kh); err == nil {
				t.Error("the known hosts file was written")
			}
		})
	}
}

// A new passphrase whose confirmation differs is asked again, like
// ssh-keygen does, instead of failing the command (issue 12).
func TestNewPassphraseMismatchAsksAgain(t *testing.T) {
	dir := t.TempDir()
	p := startOnPTY(t, dir, environWithout("SC_KEY_PASSWORD"), bin(t, "sc-cert"), "create", "--cert", "s.crt", "--key", "s.key", "--encrypt-key")
	p.waitFor("Passphrase for")
	p.typeLine("first")
	p.waitFor("Again, to confirm:")
	p.typeLine("second")
	p.waitFor("The passphrases do not match. Try again.")
	p.waitCount("Passphrase for s.key:", 2)
	p.typeLine("third")
	p.waitCount("Again, to confirm:", 2)
	p.typeLine("third")
	if code := p.exit(30 * time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.output())
	}
	cmd := exec.Command(bin(t, "sc-cert"), "inspect", "s.key")
	cmd.Dir = dir
	cmd.Env = append(environWithout("SC_KEY_PASSWORD"), "SC_KEY_PASSWORD=third")
	if out, err := childproc.CombinedOutput(cmd); err != nil || !strings.Contains(string(out), "Encrypted:") {
		t.Errorf("the key does not open with the confirmed passphrase: %v\n%s", err, out)
	}
}
