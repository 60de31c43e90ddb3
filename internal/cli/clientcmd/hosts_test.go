package clientcmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeHosts(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sc-client echo hi --host game needs nothing else when the hosts file
// has the server and its pin; the command line overrides the file, and
// config show says where each setting came from.
func TestHostsFile(t *testing.T) {
	ts := startServer(t, false)
	pin := ts.pin(t).String()
	hosts := writeHosts(t, "# test\nHost game\n    server "+ts.addr+"\n    pin "+pin+"\n\nHost *\n    ca "+ts.layout.CACert+"\n    timeout 7s\n")

	r := mustRun(t, "", "echo", "hi", "--host", "game", "--hosts-file", hosts)
	if r.stdout != "hi\n" {
		t.Errorf("echo --host game: %q", r.stdout)
	}
	// A wrong pin on the command line replaces the file's trust settings.
	if r := run(t, "", false, "echo", "hi", "--host", "game", "--hosts-file", hosts, "--pin", ts.nextPin(t).String()); r.code != ExitKeyMismatch {
		t.Errorf("--pin on the command line: exit %d, want %d\n%s", r.code, ExitKeyMismatch, r.stderr)
	}
	// The same through the environment variable, as tests elsewhere set it empty.
	t.Setenv(HostsFileEnv, hosts)
	if r := mustRun(t, "", "echo", "env", "--host", "game"); r.stdout != "env\n" {
		t.Errorf("with %s: %q", HostsFileEnv, r.stdout)
	}
	t.Setenv(HostsFileEnv, "")
	if r := run(t, "", false, "echo", "none", "--host", "game", "--tofu", "off"); r.code != ExitUnknownHost && r.code != 1 {
		t.Errorf("with %s empty the file must not be read: exit %d\n%s", HostsFileEnv, r.code, r.stderr)
	}

	show := mustRun(t, "", "config", "show", "game", "--hosts-file", hosts, "--timeout", "9s")
	for _, want := range []string{
		"trust ca+pin", // ca from Host *, pin from Host game: both hold
		"server " + ts.addr,
		"# " + hosts + ":3",
		"pin " + pin,
		"# " + hosts + ":4",
		"ca " + ts.layout.CACert,
		"timeout 9s",
		"# command line",
	} {
		if !strings.Contains(show.stdout, want) {
			t.Errorf("config show lacks %q:\n%s", want, show.stdout)
		}
	}
}

// The trust key picks the mode and drops the trust settings of others.
func TestHostsTrustKey(t *testing.T) {
	ts := startServer(t, false)
	hosts := writeHosts(t, "Host game\n    server "+ts.addr+"\n    trust pin\n    pin "+ts.pin(t).String()+"\nHost *\n    ca /nonexistent/ca.crt\n")
	if r := mustRun(t, "", "echo", "hi", "--host", "game", "--hosts-file", hosts); r.stdout != "hi\n" {
		t.Errorf("trust pin: %q", r.stdout)
	}
	show := mustRun(t, "", "config", "show", "game", "--hosts-file", hosts)
	if !strings.Contains(show.stdout, "trust pin ") || strings.Contains(show.stdout, "/nonexistent") {
		t.Errorf("trust pin must drop Host *'s ca:\n%s", show.stdout)
	}
}

// Mistakes in the file name the file and line, in any block.
func TestHostsFileErrors(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"unknown key", "Host other\n    servr x\n", ":2: unknown key \"servr\""},
		{"bad value", "Host game\n    timeout soon\n", ":2: timeout:"},
		{"twice", "Host game\n    server a:1\n    server b:2\n", ":3: server is given twice"},
		{"trust without pin", "Host game\n    trust pin\n", ":2: trust pin for game, but no pin"},
		{"bad trust", "Host game\n    trust maybe\n", ":2: trust \"maybe\""},
		{"syntax", "Host\n", ":1: Host with no pattern"},
		{"json is no key", "json true\n", ":1: unknown key \"json\""},
	} {
		t.Run(c.name, func(t *testing.T) {
			hosts := writeHosts(t, c.text)
			r := run(t, "", false, "echo", "hi", "--host", "game", "--hosts-file", hosts)
			if r.code != 2 || !strings.Contains(r.stderr, hosts+c.want) {
				t.Errorf("exit %d, want 2 and %q:\n%s", r.code, hosts+c.want, r.stderr)
			}
		})
	}
	r := run(t, "", false, "echo", "hi", "--hosts-file", filepath.Join(t.TempDir(), "missing"))
	if r.code == 0 || !strings.Contains(r.stderr, "missing") {
		t.Errorf("a named file that is missing: exit %d\n%s", r.code, r.stderr)
	}
}
