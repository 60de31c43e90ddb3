// Package softhsm makes SoftHSM2 tokens for tests: each in a directory of
// its own, initialised with softhsm2-util, so that tests share no token
// and leave nothing behind. It is test support only; nothing in the
// toolkit imports it outside tests.
//
// [New] makes a token and returns its module, label, PINs and the
// SOFTHSM2_CONF that points at it: set it in the environment of the
// process that loads the module (t.Setenv for the test process, [Token.Env]
// for a child). SoftHSM2 reads SOFTHSM2_CONF when the module is
// initialised, so one process sees one token directory at a time: tests
// that load the module in process must not run in parallel, and must
// close every token they opened before the next test initialises the
// module again.
package softhsm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Modules are the paths where distributions install the SoftHSM2 module.
var Modules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

// The PINs of every token New makes.
const (
	PIN   = "123456"
	SOPIN = "65432100"
)

// Token is one initialised SoftHSM2 token.
type Token struct {
	// Dir holds the configuration, the token directory and the PIN file.
	Dir string
	// Conf is the SoftHSM2 configuration file (SOFTHSM2_CONF).
	Conf string
	// Module is the SoftHSM2 PKCS#11 module.
	Module string
	// Label is the token's label.
	Label string
	// PINFile holds PIN on its one line, mode 0600.
	PINFile string
}

// Module returns the SoftHSM2 module installed here, or "" when there is
// none.
func Module() string {
	for _, m := range Modules {
		if _, err := os.Stat(m); err == nil {
			return m
		}
	}
	return ""
}

// Available reports why tokens cannot be made here ("" when they can):
// softhsm2-util or the module is missing.
func Available() string {
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return "softhsm2-util is not installed (apt-get install softhsm2)"
	}
	if Module() == "" {
		return "the SoftHSM2 module is not installed (apt-get install softhsm2)"
	}
	return ""
}

// New makes a token labelled label in a new temporary directory of t. It
// skips the test when SoftHSM2 is not installed — or fails it under
// CI=true, where every tool must be (scripts/deps.sh).
func New(t testing.TB, label string) *Token {
	t.Helper()
	if why := Available(); why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s, and CI=true forbids skipping: run scripts/deps.sh", why)
		}
		t.Skipf("skipping: %s", why)
	}
	dir := t.TempDir()
	tok := &Token{
		Dir:     dir,
		Conf:    filepath.Join(dir, "softhsm2.conf"),
		Module:  Module(),
		Label:   label,
		PINFile: filepath.Join(dir, "pin"),
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(tok.Conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tok.PINFile, []byte(PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok.Util(t, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SOPIN)
	return tok
}

// Env is the environment entry that points SoftHSM2 at the token.
func (tok *Token) Env() string { return "SOFTHSM2_CONF=" + tok.Conf }

// URI returns a pkcs11: URI for the token with attrs (such as
// "object=sc-server") after its module-path and token, and the PIN file as
// pin-source.
func (tok *Token) URI(attrs ...string) string {
	u := "pkcs11:module-path=" + tok.Module + ";token=" + tok.Label
	for _, a := range attrs {
		u += ";" + a
	}
	return u + "?pin-source=" + tok.PINFile
}

// Util runs softhsm2-util on the token's configuration and returns its
// output; a failure is fatal.
func (tok *Token) Util(t testing.TB, args ...string) string {
	t.Helper()
	return tok.run(t, "softhsm2-util", args...)
}

// Tool runs OpenSC's pkcs11-tool on the token, logged in, and returns its
// output; a failure is fatal. It skips (or fails under CI=true) when
// pkcs11-tool is missing.
func (tok *Token) Tool(t testing.TB, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("pkcs11-tool is not installed, and CI=true forbids skipping: run scripts/deps.sh")
		}
		t.Skip("skipping: pkcs11-tool is not installed (apt-get install opensc)")
	}
	base := []string{"--module", tok.Module, "--token-label", tok.Label, "--login", "--pin", PIN}
	return tok.run(t, "pkcs11-tool", append(base, args...)...)
}

func (tok *Token) run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), tok.Env())
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// PrivateKey is what pkcs11-tool --list-objects says about one private
// key.
type PrivateKey struct {
	Label, ID string
	// Access is its "Access:" line, e.g. "sensitive, always sensitive,
	// never extractable, local".
	Access string
}

// Sensitive reports CKA_SENSITIVE true.
func (k PrivateKey) Sensitive() bool { return hasWord(k.Access, "sensitive") }

// Extractable reports CKA_EXTRACTABLE true: pkcs11-tool lists
// "extractable" for it, and "never extractable" for CKA_NEVER_EXTRACTABLE.
func (k PrivateKey) Extractable() bool { return hasWord(k.Access, "extractable") }

func hasWord(list, word string) bool {
	for _, w := range strings.Split(list, ",") {
		if strings.TrimSpace(w) == word {
			return true
		}
	}
	return false
}

var objectHeader = regexp.MustCompile(`^Private Key Object`)

// PrivateKeys lists the token's private keys with pkcs11-tool.
func (tok *Token) PrivateKeys(t testing.TB) []PrivateKey {
	t.Helper()
	out := tok.Tool(t, "--list-objects", "--type", "privkey")
	var keys []PrivateKey
	for _, line := range strings.Split(out, "\n") {
		if objectHeader.MatchString(line) {
			keys = append(keys, PrivateKey{})
			continue
		}
		if len(keys) == 0 {
			continue
		}
		k := &keys[len(keys)-1]
		name, value, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch name {
		case "label":
			k.Label = value
		case "ID":
			k.ID = value
		case "Access":
			k.Access = value
		}
	}
	return keys
}
