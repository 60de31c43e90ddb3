package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// PassphraseEnv is the environment variable a passphrase may come from.
const PassphraseEnv = "SC_KEY_PASSWORD"

// ErrNoPassphrase means a passphrase is needed and none of its sources
// gave one; the error carries hints naming --password-file and
// SC_KEY_PASSWORD.
var ErrNoPassphrase = errors.New("a passphrase is needed")

// Passphrase finds the passphrase of encrypted keys, in this order: the
// file named by --password-file (its first line), the SC_KEY_PASSWORD
// environment variable, or a prompt on the terminal — only when standard
// input is one. Without any of them it fails fast with [ErrNoPassphrase]
// and a hint, instead of hanging on a prompt nobody sees.
//
// The zero value reads the real environment and terminal; tests set the
// function fields. A Passphrase reads each source at most once.
type Passphrase struct {
	// File is the --password-file flag's value.
	File string

	// Getenv reads the environment. Nil means os.Getenv.
	Getenv func(string) string

	// Stdin is checked for being a terminal and read from when prompting.
	// Nil means os.Stdin.
	Stdin *os.File

	// Prompt is where the prompt is written. Nil means os.Stderr.
	Prompt io.Writer

	// ReadPassword reads a line without echo. Nil means term.ReadPassword
	// on Stdin.
	ReadPassword func() ([]byte, error)

	// IsTerminal reports whether Stdin is a terminal. Nil means checking
	// it with golang.org/x/term.
	IsTerminal func() bool

	once sync.Once
	pass []byte
	err  error
}

// AddFlags adds --password-file to fs.
func (p *Passphrase) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&p.File, "password-file", "", "read the key passphrase from the first line of `FILE` (else $"+PassphraseEnv+", else a terminal prompt)")
}

// Given reports whether a passphrase was supplied without prompting: by
// --password-file or the environment variable.
func (p *Passphrase) Given() bool {
	return p.File != "" || p.getenv(PassphraseEnv) != ""
}

// Source returns a function for pki.KeyOptions.Passphrase: it is called
// only when a key turns out to be encrypted, and what it returns is
// remembered, so one command prompts at most once. what names the key
// in the prompt.
func (p *Passphrase) Source(what string) func() ([]byte, error) {
	return func() ([]byte, error) {
		p.once.Do(func() { p.pass, p.err = p.read(what, false) })
		return p.pass, p.err
	}
}

// ForNewKey returns the passphrase to encrypt a new key with; a terminal
// prompt asks twice and insists the answers match.
func (p *Passphrase) ForNewKey(what string) ([]byte, error) {
	p.once.Do(func() {
		p.pass, p.err = p.read(what, true)
		if p.err != nil {
			p.err = fmt.Errorf("reading passphrase: %w", p.err)
		}
	})
	return p.pass, p.err
}

func (p *Passphrase) getenv(k string) string {
	if p.Getenv != nil {
		return p.Getenv(k)
	}
	return os.Getenv(k)
}

// read gets the passphrase. Its errors do not say "reading passphrase":
// pki says it around a Source's errors, and ForNewKey around its own.
func (p *Passphrase) read(what string, confirm bool) ([]byte, error) {
	if p.File != "" {
		data, err := os.ReadFile(p.File)
		if err != nil {
			return nil, err
		}
		line, _, _ := bytes.Cut(data, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return nil, fmt.Errorf("passphrase file %q is empty", p.File)
		}
		return line, nil
	}
	if v := p.getenv(PassphraseEnv); v != "" {
		return []byte(v), nil
	}
	stdin := p.Stdin
	if stdin == nil {
		stdin = os.Stdin
	}
	isTerm := p.IsTerminal
	if isTerm == nil {
		isTerm = func() bool { return term.IsTerminal(int(stdin.Fd())) }
	}
	if !isTerm() {
		return nil, &Error{Code: ExitFailure, Err: fmt.Errorf("%w for %s and standard input is not a terminal to ask on", ErrNoPassphrase, what),
			Hints: []string{"give it with --password-file FILE or the " + PassphraseEnv + " environment variable"}}
	}
	readPw := p.ReadPassword
	if readPw == nil {
		readPw = func() ([]byte, error) { return term.ReadPassword(int(stdin.Fd())) }
	}
	out := p.Prompt
	if out == nil {
		out = os.Stderr
	}
	ask := func(prompt string) ([]byte, error) {
		fmt.Fprint(out, prompt)
		pw, err := readPw()
		fmt.Fprintln(out)
		if err != nil {
			return nil, fmt.Errorf("from the terminal: %w", err)
		}
		return pw, nil
	}
	pw, err := ask(fmt.Sprintf("Passphrase for %s: ", what))
	if err != nil {
		return nil, err
	}
	if len(pw) == 0 {
		return nil, errors.New("empty passphrase")
	}
	if confirm {
		again, err := ask("Again, to confirm: ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("the two passphrases differ")
		}
	}
	return pw, nil
}
