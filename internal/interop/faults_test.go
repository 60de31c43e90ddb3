//go:build unix

package interop

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
	"github.com/spacecaptain/spacecaptain/pki"
)

// Issue 7, toolkit faults: the real sc-server and sc-cert given a wrong or
// missing passphrase, PEM with trailing garbage, the key of another
// certificate, an RSA key over 8,192 bits, or a key file others may read
// refuse with a clear error — exit status, the file named, the likely
// mistake — and leave every file on disk as it was. A full disk and a
// read-only certificate directory are in faults_linux_test.go.

// faultCase is one command that must fail.
type faultCase struct {
	name string
	bin  string   // "sc-server" or "sc-cert"
	args []string // run in the test's directory
	env  []string // added to an environment without SC_KEY_PASSWORD
	code int      // the exit status it must fail with
	want []string // every one must be in its standard error
}

// runFaultCases runs each case in dir and checks its exit status and
// message, that sc-server printed nothing on standard output (it never got
// to serve), and that no file under dir changed: content, mode, and no
// file added or removed.
func runFaultCases(t *testing.T, dir string, cases []faultCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snapshotTree(t, dir)
			out, errOut, code := runBounded(t, dir, c.env, bin(t, c.bin), c.args...)
			t.Logf("%s %s: exit %d\n%s", c.bin, strings.Join(c.args, " "), code, errOut)
			if code != c.code {
				t.Errorf("%s %s: exit %d, want %d\nstdout: %s\nstderr: %s", c.bin, strings.Join(c.args, " "), code, c.code, out, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("%s %s: the error does not say %q:\n%s", c.bin, strings.Join(c.args, " "), w, errOut)
				}
			}
			if c.bin == "sc-server" && out != "" {
				t.Errorf("sc-server printed on stdout, as if it had started:\n%s", out)
			}
			if d := snapshotTree(t, dir).diff(before); len(d) > 0 {
				t.Errorf("%s %s changed files on disk: %s", c.bin, strings.Join(c.args, " "), strings.Join(d, ", "))
			}
		})
	}
}

// runBounded runs a command in dir with standard input not a terminal
// (/dev/null, so nothing can prompt) and SC_KEY_PASSWORD unset, plus env.
// It must exit within a minute: a server that serves instead of refusing
// is killed and fails the test.
func runBounded(t *testing.T, dir string, env []string, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(environWithout("SC_KEY_PASSWORD"), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := childproc.Run(cmd)
	if ctx.Err() != nil {
		t.Fatalf("%s %s did not exit within a minute (serving instead of refusing?):\n%s", filepath.Base(name), strings.Join(args, " "), errOut.String())
	}
	return out.String(), errOut.String(), exitCode(t, err)
}

// environWithout returns the environment without the variable name.
func environWithout(name string) []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, name+"=") })
}

// treeState maps each file and directory under a root (relative path) to
// its mode and a digest of its content.
type treeState map[string]string

// emptyFileState is how snapshotTree records an empty file of mode 0600.
var emptyFileState = func() string {
	sum := sha256.Sum256(nil)
	return "-rw------- " + hex.EncodeToString(sum[:8])
}()

func snapshotTree(t *testing.T, root string) treeState {
	t.Helper()
	s := treeState{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			v += " " + hex.EncodeToString(sum[:8])
		}
		s[rel] = v
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot of %s: %v", root, err)
	}
	return s
}

// diff lists what changed from before to s: "name (was X, now Y)". An
// empty lock file that appeared is not a change: sc-cert creates it on
// first use of a directory and leaves it, by design (.sc-cert.lock).
func (s treeState) diff(before treeState) []string {
	var d []string
	for p, v := range before {
		if w, ok := s[p]; !ok {
			d = append(d, p+" (removed)")
		} else if w != v {
			d = append(d, fmt.Sprintf("%s (was %s, now %s)", p, v, w))
		}
	}
	for p, v := range s {
		if filepath.Base(p) == ".sc-cert.lock" && v == emptyFileState {
			continue
		}
		if _, ok := before[p]; !ok {
			d = append(d, p+" (added)")
		}
	}
	slices.Sort(d)
	return d
}

func mustWriteFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// copyLayout copies the files of the certificate directory from into a new
// directory to, keeping their modes.
func copyLayout(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Mkdir(to, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{pki.CACertFile, pki.CAKeyFile, pki.ServerCertFile, pki.ServerKeyFile, pki.NextKeyFile} {
		src := filepath.Join(from, name)
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(src)
		if err != nil {
			t.Fatal(err)
		}
		mustWriteFile(t, filepath.Join(to, name), b, fi.Mode().Perm())
	}
}

// serverArgs is sc-server's arguments: loopback, a port of its choice, then
// extra.
func serverArgs(extra ...string) []string {
	return append([]string{"--listen", "127.0.0.1:0"}, extra...)
}

// An encrypted layout (sc-cert init --encrypt-key): a wrong passphrase from
// each source, or none at all with no terminal to ask on, is refused by
// sc-server (start and --check) and every sc-cert command that reads the
// key, with the key named and the sources to fix; then the right one works.
func TestFaultWrongOrMissingPassphrase(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "pass"), filepath.Join(dir, "wrong-pass")
	mustWriteFile(t, good, []byte("correct horse battery staple\n"), 0o600)
	mustWriteFile(t, bad, []byte("Tr0ub4dor&3\n"), 0o600)
	run(t, dir, bin(t, "sc-cert"), "init", "--encrypt-key", "--password-file", good)
	key := filepath.Join("certs", "server.key")
	wrongEnv := []string{"SC_KEY_PASSWORD=Tr0ub4dor&3"}
	const incorrect = "incorrect passphrase"
	runFaultCases(t, dir, []faultCase{
		{"server, wrong SC_KEY_PASSWORD", "sc-server", serverArgs(), wrongEnv, 1, []string{key, incorrect, "SC_KEY_PASSWORD"}},
		{"server, wrong --key-password-file", "sc-server", serverArgs("--key-password-file", bad), nil, 1, []string{key, incorrect, "--key-password-file"}},
		{"server, no passphrase and no terminal", "sc-server", serverArgs(), nil, 1, []string{key, "not a terminal", "--key-password-file", "SC_KEY_PASSWORD"}},
		{"server, --key-password-file missing", "sc-server", serverArgs("--key-password-file", "no-such-file"), nil, 1, []string{key, "no-such-file", "no such file"}},
		{"server --check, wrong passphrase", "sc-server", []string{"--check"}, wrongEnv, 1, []string{key, incorrect}},
		{"rotate, wrong passphrase", "sc-cert", []string{"rotate", "--password-file", bad}, nil, 1, []string{key, incorrect, "--password-file"}},
		{"rotate --promote-next, no passphrase", "sc-cert", []string{"rotate", "--promote-next"}, nil, 1, []string{key, "--password-file", "SC_KEY_PASSWORD"}},
		{"verify, wrong passphrase", "sc-cert", []string{"verify", "--cert", "certs/server.crt", "--key", key}, wrongEnv, 1, []string{key, incorrect}},
		{"fingerprint, wrong passphrase", "sc-cert", []string{"fingerprint", key}, wrongEnv, 1, []string{key, incorrect}},
		{"inspect, wrong passphrase", "sc-cert", []string{"inspect", "certs/server.next.key"}, wrongEnv, 1, []string{"server.next.key", incorrect}},
		{"pin show --next, wrong passphrase", "sc-cert", []string{"pin", "show", "certs", "--next"}, wrongEnv, 1, []string{"server.next.key", incorrect}},
	})

	// The right passphrase: the same files verify and serve.
	before := snapshotTree(t, dir)
	if out, errOut, code := runBounded(t, dir, nil, bin(t, "sc-cert"), "verify", "--cert", "certs/server.crt", "--key", key, "--password-file", good); code != 0 {
		t.Errorf("verify with the right passphrase: exit %d\n%s%s", code, out, errOut)
	}
	srv := startSCServer(t, dir, "--key-password-file", good)
	mustSCClient(t, dir, "echo", "hello", "--server", srv.Addr, "--pin", srv.Pin)
	// A server that serves records the key it serves beside the
	// certificates (issue 15, the guard against unannounced key changes);
	// nothing else changes.
	d := slices.DeleteFunc(snapshotTree(t, dir).diff(before), func(s string) bool { return s == filepath.Join("certs", "key-state.json")+" (added)" })
	if len(d) > 0 {
		t.Errorf("files changed: %s", strings.Join(d, ", "))
	}
}

// A certificate or key file with text after its last PEM block is refused
// by name and line (encoding/pem alone would ignore it), by sc-server and
// by sc-cert, and neither "repairs" the file.
func TestFaultPEMTrailingGarbage(t *testing.T) {
	dir := t.TempDir()
	run(t, dir, bin(t, "sc-cert"), "init", "--dir", "good")
	copyLayout(t, filepath.Join(dir, "good"), filepath.Join(dir, "badcert"))
	copyLayout(t, filepath.Join(dir, "good"), filepath.Join(dir, "badkey"))
	appendTo := func(path string, b []byte) {
		f, err := os.OpenFile(filepath.Join(dir, path), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	appendTo("badcert/server.crt", []byte("garbage after the certificate\n"))
	appendTo("badkey/server.key", []byte("\x00\x01 binary garbage"))
	const trailing = "unexpected text after the last PEM block"
	certArgs := func(d string) []string {
		return []string{"--cert", d + "/server.crt", "--key", d + "/server.key"}
	}
	runFaultCases(t, dir, []faultCase{
		{"server, certificate", "sc-server", serverArgs(certArgs("badcert")...), nil, 1, []string{"badcert/server.crt", trailing}},
		{"server, key", "sc-server", serverArgs(certArgs("badkey")...), nil, 1, []string{"badkey/server.key", trailing}},
		{"server --check, key", "sc-server", append([]string{"--check"}, certArgs("badkey")...), nil, 1, []string{"badkey/server.key", trailing}},
		{"rotate, certificate", "sc-cert", []string{"rotate", "--cert", "badcert/server.crt"}, nil, 1, []string{"badcert/server.crt", trailing}},
		{"rotate, key", "sc-cert", []string{"rotate", "--cert", "badkey/server.crt"}, nil, 1, []string{"badkey/server.key", trailing}},
		{"verify, key", "sc-cert", append([]string{"verify"}, certArgs("badkey")...), nil, 1, []string{"badkey/server.key", trailing}},
		{"inspect, certificate", "sc-cert", []string{"inspect", "badcert/server.crt"}, nil, 1, []string{"badcert/server.crt", trailing}},
		{"fingerprint, key", "sc-cert", []string{"fingerprint", "badkey/server.key"}, nil, 1, []string{"badkey/server.key", trailing}},
	})
}

// A certificate served with the key of another certificate — another
// layout's, or the next key (the likeliest mix-up) — is refused by
// sc-server, sc-cert verify (exit 3), rotate and create, naming both pins.
func TestFaultKeyOfAnotherCertificate(t *testing.T) {
	dir := t.TempDir()
	scCert := bin(t, "sc-cert")
	run(t, dir, scCert, "init", "--dir", "a")
	run(t, dir, scCert, "init", "--dir", "b")
	const mismatch = "belongs to another certificate"
	runFaultCases(t, dir, []faultCase{
		{"server, another layout's key", "sc-server", serverArgs("--cert", "a/server.crt", "--key", "b/server.key"), nil, 1, []string{"b/server.key", "a/server.crt", mismatch}},
		{"server, the next key", "sc-server", serverArgs("--cert", "a/server.crt", "--key", "a/server.next.key", "--next-key", "b/server.next.key"), nil, 1, []string{"a/server.next.key", mismatch}},
		{"server --check", "sc-server", []string{"--check", "--cert", "a/server.crt", "--key", "b/server.key"}, nil, 1, []string{"b/server.key", mismatch}},
		{"verify", "sc-cert", []string{"verify", "--cert", "a/server.crt", "--key", "b/server.key"}, nil, 3, []string{"key check failed", "another certificate"}},
		{"rotate", "sc-cert", []string{"rotate", "--cert", "a/server.crt", "--key", "b/server.key"}, nil, 1, []string{"b/server.key", mismatch}},
		{"rotate, another CA's key", "sc-cert", []string{"rotate", "--cert", "a/server.crt", "--issuer-cert", "a/ca.crt", "--issuer-key", "b/ca.key"}, nil, 1, []string{"b/ca.key", "does not match"}},
		{"create, another CA's key", "sc-cert", []string{"create", "--cert", "c.crt", "--key", "c.key", "--issuer-cert", "a/ca.crt", "--issuer-key", "b/ca.key"}, nil, 1, []string{"does not match"}},
	})
}

// bigKeyBits is the size of the committed oversized key.
const bigKeyBits = 8200

// An RSA key over pki.MaxRSABits (the committed 8,200-bit test key, made by
// testdata/genbigkey.go) with a certificate for it, from the layout's CA:
// sc-server refuses it at load, before any handshake could cost a
// signature with it, and so does every sc-cert command that loads it.
func TestFaultOversizedRSAKey(t *testing.T) {
	dir := t.TempDir()
	run(t, dir, bin(t, "sc-cert"), "init")
	b, err := os.ReadFile(filepath.Join("testdata", "rsa-8200.key.testing"))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := bytes.ReplaceAll(b, []byte("TESTING KEY"), []byte("PRIVATE KEY"))
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatal("testdata/rsa-8200.key.testing holds no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok || rk.N.BitLen() != bigKeyBits {
		t.Fatalf("testdata/rsa-8200.key.testing: got %T, want an RSA key of %d bits", k, bigKeyBits)
	}
	big := filepath.Join(dir, "big")
	if err := os.Mkdir(big, 0o755); err != nil {
		t.Fatal(err)
	}
	mustWriteFile(t, filepath.Join(big, "server.key"), keyPEM, 0o600)
	certPEM, _ := mustIssuer(t, filepath.Join(dir, "certs")).issue(t, filepath.Join(dir, "certs", "server.crt"), rk.Public(), time.Time{}, time.Time{})
	mustWriteFile(t, filepath.Join(big, "server.crt"), certPEM, 0o644)

	tooLarge := fmt.Sprintf("RSA key too large: %d bits, the maximum is %d", bigKeyBits, pki.MaxRSABits)
	pair := []string{"--cert", "big/server.crt", "--key", "big/server.key"}
	runFaultCases(t, dir, []faultCase{
		{"server", "sc-server", serverArgs(pair...), nil, 1, []string{"big/server.key", tooLarge}},
		{"server --check", "sc-server", append([]string{"--check"}, pair...), nil, 1, []string{"big/server.key", tooLarge}},
		{"verify", "sc-cert", append([]string{"verify"}, pair...), nil, 1, []string{"big/server.key", tooLarge}},
		{"inspect", "sc-cert", []string{"inspect", "big/server.key"}, nil, 1, []string{"big/server.key", tooLarge}},
		{"fingerprint", "sc-cert", []string{"fingerprint", "big/server.key"}, nil, 1, []string{"big/server.key", tooLarge}},
		{"rotate", "sc-cert", []string{"rotate", "--cert", "big/server.crt"}, nil, 1, []string{"big/server.key", tooLarge}},
		{"create, signed by it", "sc-cert", []string{"create", "--cert", "c.crt", "--key", "c.key", "--issuer-cert", "big/server.crt", "--issuer-key", "big/server.key"}, nil, 1, []string{"big/server.key", tooLarge}},
	})
}

// Key files others may read are refused by sc-server (the key, the next
// key, the ticket-key file; at start and with --check) and by sc-cert
// rotate (the key, the CA key, the next key it promotes), each with the
// chmod that fixes it. Root reads every file, so as root group-readable
// keys are refused too (the one exception, a root-owned key read by a
// non-root server, does not apply).
func TestFaultKeyReadableByOthers(t *testing.T) {
	dir := t.TempDir()
	scCert := bin(t, "sc-cert")
	run(t, dir, scCert, "init")
	run(t, dir, scCert, "ticket-keys", "ticket.keys")
	for _, mode := range []os.FileMode{0o644, 0o604, 0o660} {
		t.Run(fmt.Sprintf("mode %04o", mode), func(t *testing.T) {
			for _, c := range []struct {
				file string
				faultCase
			}{
				{"certs/server.key", faultCase{"server", "sc-server", serverArgs(), nil, 1, nil}},
				{"certs/server.key", faultCase{"server --check", "sc-server", []string{"--check"}, nil, 1, nil}},
				{"certs/server.next.key", faultCase{"server, next key", "sc-server", serverArgs(), nil, 1, nil}},
				{"ticket.keys", faultCase{"server, ticket keys", "sc-server", serverArgs("--ticket-keys", "ticket.keys"), nil, 1, nil}},
				{"certs/server.key", faultCase{"rotate", "sc-cert", []string{"rotate"}, nil, 1, nil}},
				{"certs/ca.key", faultCase{"rotate, CA key", "sc-cert", []string{"rotate"}, nil, 1, nil}},
				{"certs/server.next.key", faultCase{"rotate --promote-next", "sc-cert", []string{"rotate", "--promote-next"}, nil, 1, nil}},
			} {
				path := filepath.Join(dir, c.file)
				if err := os.Chmod(path, mode); err != nil {
					t.Fatal(err)
				}
				c.want = []string{c.file, fmt.Sprintf("mode %04o:", mode), "chmod 600"}
				runFaultCases(t, dir, []faultCase{c.faultCase})
				if err := os.Chmod(path, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	if t.Failed() {
		return
	}
	// Private again, everything works.
	srv := startSCServer(t, dir, "--ticket-keys", "ticket.keys")
	mustSCClient(t, dir, "echo", "hello", "--server", srv.Addr, "--pin", srv.Pin)
	run(t, dir, scCert, "rotate", "--promote-next")
}
