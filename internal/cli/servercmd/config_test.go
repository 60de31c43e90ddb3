package servercmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pinning"
)

// runConfigCmd runs sc-server in process with args and the environment environ
// (nil: none) and returns its exit code, stdout and stderr.
func runConfigCmd(t *testing.T, environ []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := NewRootCmd(Env{Environ: func() []string { return environ }, Getenv: func(string) string { return "" }})
	cmd.SetArgs(args)
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	code := cli.Main(context.Background(), cmd)
	return code, out.String(), errOut.String()
}

func mustWriteFile(t *testing.T, path, data string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// printed returns --print-config's lines as key -> "value # origin".
func printed(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, rest, ok := strings.Cut(line, " = ")
		if !ok {
			t.Fatalf("--print-config line %q is not key = value", line)
		}
		v, origin, _ := strings.Cut(rest, "#")
		m[k] = strings.TrimSpace(v) + " # " + strings.TrimSpace(origin)
	}
	return m
}

// Flags win over SC_SERVER_* variables, which win over the file; each
// setting says where it came from.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := mustWriteFile(t, filepath.Join(dir, "sc-server.toml"), `# a comment
listen = "127.0.0.1:4300"
max-conns = 100
log-level = "warn"
groups = ["X25519", "P-256"]
proxy-protocol-from = ["10.0.0.0/8", "192.0.2.1"]
auto-renew = false
`)
	env := []string{"SC_SERVER_MAX_CONNS=200", "SC_SERVER_LOG_LEVEL=error", "PATH=/bin"}
	code, out, errOut := runConfigCmd(t, env, "--config", cfg, "--print-config", "--log-level", "debug")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := printed(t, out)
	for k, want := range map[string]string{
		"listen":              `"127.0.0.1:4300" # ` + cfg + ":2",
		"max-conns":           `200 # environment SC_SERVER_MAX_CONNS`,
		"log-level":           `"debug" # command line`,
		"groups":              `"X25519,P-256" # ` + cfg + ":5",
		"proxy-protocol-from": `"10.0.0.0/8,192.0.2.1/32" # ` + cfg + ":6",
		"auto-renew":          `false # ` + cfg + ":7",
		"engine":              `"` + NewRootCmd(Env{}).Flags().Lookup("engine").DefValue + `" # default`,
	} {
		if got[k] != want {
			t.Errorf("%s: got %s, want %s", k, got[k], want)
		}
	}
	if !strings.Contains(out, "Configuration file: "+cfg+" (--config)") {
		t.Errorf("--print-config does not name the file:\n%s", out)
	}
}

// What --print-config prints is a configuration file that gives the same
// settings back.
func TestPrintConfigRoundTrip(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runConfigCmd(t, nil, "--config", "", "--print-config", "--listen", "127.0.0.1:9", "--groups", "X25519", "--proxy-protocol-from", "10.1.0.0/16", "--source-handshake-rate", "0.5", "--log-format", "json", "--cert", `odd "name" \dir/server.crt`)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	cfg := mustWriteFile(t, filepath.Join(dir, "printed.toml"), out)
	code, again, errOut := runConfigCmd(t, nil, "--config", cfg, "--print-config")
	if code != 0 {
		t.Fatalf("reading the printed file: exit %d: %s", code, errOut)
	}
	first, second := printed(t, out), printed(t, again)
	for k, v := range first {
		fv, _, _ := strings.Cut(v, " # ")
		sv, _, _ := strings.Cut(second[k], " # ")
		if fv != sv {
			t.Errorf("%s: printed %s, read back %s", k, fv, sv)
		}
	}
}

// An unknown key, a bad value, a wrong type or a conflict is an error
// naming the file and line (or the variable), with exit code 2, and
// --check reports it too.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, file string
		env        []string
		want       []string
	}{
		{"unknown key", "listen = \":1\"\nmax-con = 3\n", nil, []string{":2: unknown key \"max-con\""}},
		{"bad value", "listen = \":1\"\n\nmin-tls = \"1.1\"\n", nil, []string{":3: min-tls:", "1.1"}},
		{"string for a number", "max-conns = \"3\"\n", nil, []string{":1: max-conns: want a number"}},
		{"number for a string", "listen = 4242\n", nil, []string{":1: listen: want a string"}},
		{"list for one value", "listen = [\":1\", \":2\"]\n", nil, []string{":1: listen: want a string"}},
		{"section", "listen = \":1\"\n[server]\nx = 1\n", nil, []string{":2: [server]: the file has no sections"}},
		{"dotted key", "server.listen = \":1\"\n", nil, []string{":1: unknown key \"server.listen\""}},
		{"syntax", "listen = \":1\n", nil, []string{":1:"}},
		{"duplicate", "listen = \":1\"\nlisten = \":2\"\n", nil, []string{":2:", "already defined"}},
		{"command-line only", "check = true\n", nil, []string{":1: check is not a setting"}},
		{"validation", "max-conns = 1\n\nlisten = \"nope\"\n", nil, []string{":3: --listen \"nope\""}},
		{"conflict", "plaintext = true\ncert = \"x.crt\"\n", nil, []string{"can't be used together", "plaintext (", ":1)", "cert (", ":2)"}},
		{"unknown variable", "", []string{"SC_SERVER_LISTN=:1"}, []string{"environment variable SC_SERVER_LISTN", "--listn"}},
		{"bad variable", "", []string{"SC_SERVER_MAX_CONNS=lots"}, []string{"environment variable SC_SERVER_MAX_CONNS=\"lots\""}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := mustWriteFile(t, filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".toml"), c.file)
			for _, args := range [][]string{{"--config", cfg, "--print-config"}, {"--config", cfg, "--check"}} {
				code, _, errOut := runConfigCmd(t, c.env, args...)
				if code != cli.ExitUsage {
					t.Errorf("%v: exit %d, want %d: %s", args, code, cli.ExitUsage, errOut)
				}
				for _, w := range c.want {
					if !strings.Contains(errOut, w) {
						t.Errorf("%v: error lacks %q:\n%s", args, w, errOut)
					}
				}
				if !strings.Contains(errOut, cfg) && c.env == nil {
					t.Errorf("%v: error does not name %s:\n%s", args, cfg, errOut)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		code, _, errOut := runConfigCmd(t, nil, "--config", filepath.Join(dir, "nope.toml"), "--check")
		if code == 0 || !strings.Contains(errOut, "nope.toml") {
			t.Errorf("exit %d: %s", code, errOut)
		}
	})
	t.Run("SC_SERVER_CONFIG empty reads none", func(t *testing.T) {
		bad := mustWriteFile(t, filepath.Join(dir, "bad.toml"), "nonsense = 1\n")
		if code, out, errOut := runConfigCmd(t, []string{"SC_SERVER_CONFIG="}, "--print-config"); code != 0 || !strings.Contains(out, "Configuration file: none") {
			t.Errorf("exit %d: %s%s", code, out, errOut)
		}
		if code, _, errOut := runConfigCmd(t, []string{"SC_SERVER_CONFIG=" + bad}, "--print-config"); code != cli.ExitUsage || !strings.Contains(errOut, bad+":1") {
			t.Errorf("SC_SERVER_CONFIG names a bad file: exit %d: %s", code, errOut)
		}
	})
}

// --check validates the file with the certificate it names, and says
// which file it read.
func TestCheckConfigFile(t *testing.T) {
	l := mustInit(t)
	cfg := mustWriteFile(t, filepath.Join(t.TempDir(), "c.toml"), "cert = \""+l.ServerCert+"\"\nkey = \""+l.ServerKey+"\"\nlisten = \"127.0.0.1:0\"\n")
	code, out, errOut := runConfigCmd(t, nil, "--config", cfg, "--check")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, w := range []string{"configuration OK", "config:      " + cfg + " (--config)", "certificate: " + l.ServerCert} {
		if !strings.Contains(out, w) {
			t.Errorf("--check output lacks %q:\n%s", w, out)
		}
	}
}

// SIGHUP re-reads the file: new certificate paths and the log level apply
// at once, other changed settings are named as needing a restart, and a
// broken file changes nothing.
func TestReloadConfigFile(t *testing.T) {
	a, b := mustInit(t), mustInit(t)
	cfgPath := filepath.Join(t.TempDir(), "sc-server.toml")
	conf := func(cert, key, extra string) {
		mustWriteFile(t, cfgPath, "cert = \""+cert+"\"\nkey = \""+key+"\"\nlog-format = \"json\"\n"+extra)
	}
	conf(a.ServerCert, a.ServerKey, "")
	r := startServer(t, Env{Environ: func() []string { return nil }}, "--config", cfgPath)
	c0 := mustDial(t, r.addr, caConfig(t, a, 0))
	cs0, _ := c0.ConnectionState()
	wantA := mustPinFile(t, a.ServerCert)
	if got := pinning.PinOf(cs0.PeerCertificates[0]); !got.Equal(wantA) {
		t.Fatalf("serving %v, want a's %v", got, wantA)
	}

	conf(b.ServerCert, b.ServerKey, "log-level = \"debug\"\nmax-conns = 7\n")
	r.requestReload()
	log := r.stderr.String()
	for _, w := range []string{`"msg":"configuration re-read"`, `"applied":["cert","key","log-level"]`,
		`"msg":"configuration changes need a restart to apply"`, `"settings":["max-conns"]`} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %s:\n%s", w, log)
		}
	}
	wantB := mustPinFile(t, b.ServerCert)
	c := mustDial(t, r.addr, caConfig(t, b, 0))
	cs, _ := c.ConnectionState()
	if got := pinning.PinOf(cs.PeerCertificates[0]); !got.Equal(wantB) {
		t.Errorf("after SIGHUP serving %v, want b's %v", got, wantB)
	}
	cur, _, err := c.Keys(context.Background())
	if err != nil || cur != wantB.String() {
		t.Errorf("KEYS after SIGHUP: current %q, %v; want b's pin", cur, err)
	}

	// A broken file keeps everything; a missing pair keeps the old one.
	mustWriteFile(t, cfgPath, "cert = \""+a.ServerCert+"\"\nnonsense = 1\n")
	r.requestReload()
	if !strings.Contains(r.stderr.String(), `"msg":"configuration file not re-read; the settings in force stay"`) {
		t.Errorf("a broken file was not reported:\n%s", r.stderr)
	}
	conf(filepath.Join(t.TempDir(), "none.crt"), filepath.Join(t.TempDir(), "none.key"), "log-level = \"debug\"\n")
	r.requestReload()
	if !strings.Contains(r.stderr.String(), `"msg":"new certificate paths not used; still serving the previous certificate"`) {
		t.Errorf("unusable paths were not reported:\n%s", r.stderr)
	}
	c2 := mustDial(t, r.addr, caConfig(t, b, 0))
	cs, _ = c2.ConnectionState()
	if got := pinning.PinOf(cs.PeerCertificates[0]); !got.Equal(wantB) {
		t.Errorf("after unusable paths serving %v, want b's %v still", got, wantB)
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

func mustPinFile(t *testing.T, file string) pinning.Pin {
	t.Helper()
	p, err := pinning.ReadPinFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
