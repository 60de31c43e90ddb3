package cli

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestReportAndExitCode(t *testing.T) {
	base := errors.New("reading key \"k\": no private key found")
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantOut  string
	}{
		{"nil", nil, 0, ""},
		{"plain", base, 1, "prog: error: reading key \"k\": no private key found\n"},
		{"coded with hints", WithCode(4, base, "first", "second"), 4,
			"prog: error: reading key \"k\": no private key found\nprog: hint: first\nprog: hint: second\n"},
		{"hint keeps code", WithHint(WithCode(5, base, "a"), "b"), 5,
			"prog: error: reading key \"k\": no private key found\nprog: hint: a\nprog: hint: b\n"},
		{"wrapped coded", fmt.Errorf("outer: %w", WithCode(6, base)), 6, "prog: error: outer: reading key"},
		{"multi-line hint", WithHint(base, "line one\nline two"), 1, "prog: hint: line one\nprog: hint: line two\n"},
		{"interrupted", fmt.Errorf("waiting: %w", context.Canceled), 130, "prog: error: interrupted\n"},
		{"usage", Usagef("--a can't be used with --b"), 2, "prog: error: --a can't be used with --b\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			code := Report(&buf, "prog", tt.err)
			if code != tt.wantCode {
				t.Errorf("code: got %d, want %d", code, tt.wantCode)
			}
			if !strings.Contains(buf.String(), tt.wantOut) || (tt.wantOut == "" && buf.Len() != 0) {
				t.Errorf("output: got %q, want it to contain %q", buf.String(), tt.wantOut)
			}
		})
	}
}

func TestMainFlagErrorIsUsage(t *testing.T) {
	newRoot := func() *cobra.Command {
		root := &cobra.Command{Use: "prog", RunE: func(*cobra.Command, []string) error { return WithCode(7, errors.New("boom"), "do X") }}
		root.Flags().Bool("ok", false, "")
		SetupRoot(root)
		return root
	}
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{[]string{"--nope"}, ExitUsage, "prog: hint: run 'prog --help' for usage"},
		{[]string{"--ok"}, 7, "prog: error: boom\nprog: hint: do X\n"},
		{[]string{"--version"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			root := newRoot()
			var out, errOut bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&errOut)
			root.SetArgs(tt.args)
			if code := Main(context.Background(), root); code != tt.wantCode {
				t.Errorf("code: got %d, want %d (stderr %q)", code, tt.wantCode, errOut.String())
			}
			if !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("stderr: got %q, want %q", errOut.String(), tt.wantErr)
			}
			if tt.args[0] == "--version" && !strings.HasPrefix(out.String(), "prog ") {
				t.Errorf("--version: got %q", out.String())
			}
		})
	}
}

func TestPassphraseSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("from file\r\nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == PassphraseEnv {
				return v
			}
			return ""
		}
	}
	prompts := 0
	reader := func(answers ...string) func() ([]byte, error) {
		return func() ([]byte, error) {
			prompts++
			a := answers[0]
			answers = answers[1:]
			return []byte(a), nil
		}
	}
	yes := func() bool { return true }
	no := func() bool { return false }
	tests := []struct {
		name    string
		p       *Passphrase
		newKey  bool
		want    string
		wantErr string
	}{
		{"file wins", &Passphrase{File: file, Getenv: env("env")}, false, "from file", ""},
		{"env", &Passphrase{Getenv: env("env")}, false, "env", ""},
		{"no terminal", &Passphrase{Getenv: env(""), IsTerminal: no}, false, "", "not a terminal"},
		{"prompt", &Passphrase{Getenv: env(""), IsTerminal: yes, ReadPassword: reader("typed"), Prompt: &bytes.Buffer{}}, false, "typed", ""},
		{"prompt new key confirmed", &Passphrase{Getenv: env(""), IsTerminal: yes, ReadPassword: reader("a", "a"), Prompt: &bytes.Buffer{}}, true, "a", ""},
		// issue 12: a mismatch asks again, like ssh-keygen, three times.
		{"prompt new key mismatch then match", &Passphrase{Getenv: env(""), IsTerminal: yes, ReadPassword: reader("a", "b", "c", "c"), Prompt: &bytes.Buffer{}}, true, "c", ""},
		{"prompt new key mismatch three times", &Passphrase{Getenv: env(""), IsTerminal: yes, ReadPassword: reader("a", "b", "c", "d", "e", "f"), Prompt: &bytes.Buffer{}}, true, "", "did not match 3 times"},
		{"missing file", &Passphrase{File: filepath.Join(dir, "nope")}, false, "", "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []byte
			var err error
			if tt.newKey {
				got, err = tt.p.ForNewKey("the key")
			} else {
				got, err = tt.p.Source("the key")()
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	t.Run("hint names the flag and the variable", func(t *testing.T) {
		p := &Passphrase{Getenv: env(""), IsTerminal: no}
		_, err := p.Source("server.key")()
		var buf bytes.Buffer
		Report(&buf, "sc-cert", err)
		if !errors.Is(err, ErrNoPassphrase) || !strings.Contains(buf.String(), "hint: give it with --password-file FILE or the SC_KEY_PASSWORD") {
			t.Errorf("got %q", buf.String())
		}
	})
	t.Run("asks once", func(t *testing.T) {
		prompts = 0
		p := &Passphrase{Getenv: env(""), IsTerminal: yes, ReadPassword: reader("x"), Prompt: &bytes.Buffer{}}
		src := p.Source("k")
		src()
		src()
		if prompts != 1 {
			t.Errorf("prompted %d times, want 1", prompts)
		}
	})
}

func TestSpinnerSilentWhenNotATerminal(t *testing.T) {
	var buf bytes.Buffer
	stop := StartSpinner(&buf, "generating")
	stop()
	stop()
	if buf.Len() != 0 {
		t.Errorf("got %q, want nothing on a non-terminal", buf.String())
	}
}

func TestVersion(t *testing.T) {
	if v := Version(); v == "" {
		t.Error("empty version")
	}
}

func TestPrintJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := PrintJSON(&buf, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), "{\n  \"a\": 1\n}\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDescribeKey(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 1024)
	ed, _, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name     string
		pub      crypto.PublicKey
		want     string
		wantBits int
	}{
		{"ecdsa", &ec.PublicKey, "ECDSA P-384", 384},
		{"rsa", &rk.PublicKey, "RSA 1024", 1024},
		{"ed25519", ed, "Ed25519", 256},
		{"unknown", "a string", "unknown key string", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, bits := DescribeKey(tt.pub)
			if got != tt.want || bits != tt.wantBits {
				t.Errorf("got %q, %d bits; want %q, %d bits", got, bits, tt.want, tt.wantBits)
			}
		})
	}
}
