package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/spacecaptain/spacecaptain/internal/trustfile"
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

	// PipeTimeout bounds the wait for File when it is a pipe (a FIFO, or
	// the /dev/fd/N of a shell's <(…)): its writer must write and close
	// it within this time. Zero means trustfile.DefaultPipeTimeout.
	PipeTimeout time.Duration

	// Context ends a prompt: when it is done (SIGINT or SIGTERM, through
	// signal.NotifyContext in main), the terminal is restored and the
	// prompt fails at once with the context's error, which exits 130.
	// Nil means a prompt that only input ends.
	Context context.Context

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
		// Through the hardened reader, as every file the toolkit trusts:
		// a regular file, or a pipe whose writer closes it in time — never
		// a FIFO that nobody writes, which os.ReadFile waits on forever.
		kind := trustfile.Passphrase
		if p.PipeTimeout > 0 {
			kind.PipeTimeout = p.PipeTimeout
		}
		data, _, err := trustfile.Read(p.File, kind)
		if err != nil {
			var tf *trustfile.Error
			if errors.As(err, &tf) {
				return nil, fmt.Errorf("passphrase file %q: %w", p.File, err)
			}
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
		readPw = func() ([]byte, error) { return readPasswordContext(p.Context, int(stdin.Fd())) }
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
	if !confirm {
		return pw, nil
	}
	// As ssh-keygen does, a mismatch asks again, up to three times.
	for try := 1; ; try++ {
		again, err := ask("Again, to confirm: ")
		if err != nil {
			return nil, err
		}
		if bytes.Equal(pw, again) {
			return pw, nil
		}
		if try == confirmTries {
			return nil, fmt.Errorf("the passphrases did not match %d times", confirmTries)
		}
		fmt.Fprintln(out, "The passphrases do not match. Try again.")
		if pw, err = ask(fmt.Sprintf("Passphrase for %s: ", what)); err != nil {
			return nil, err
		}
		if len(pw) == 0 {
			return nil, errors.New("empty passphrase")
		}
	}
}

// confirmTries is how many times a new passphrase is asked for before a
// mismatch is an error.
const confirmTries = 3

// readPasswordContext reads a line without echo from the terminal fd, as
// term.ReadPassword does, but returns as soon as ctx is done, after
// restoring the terminal: a signal at the prompt must not leave the
// terminal without echo, nor wait for a line nobody will type.
func readPasswordContext(ctx context.Context, fd int) ([]byte, error) {
	if ctx == nil {
		return term.ReadPassword(fd)
	}
	state, err := term.GetState(fd)
	if err != nil {
		return nil, err
	}
	type result struct {
		pw  []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		pw, err := term.ReadPassword(fd)
		done <- result{pw, err}
	}()
	select {
	case r := <-done:
		return r.pw, r.err
	case <-ctx.Done():
		// The reader goroutine stays blocked in read(2) until the
		// process exits, which it is about to.
		_ = term.Restore(fd, state)
		return nil, ctx.Err()
	}
}

// ReadLine reads one line from r, as bufio.Reader.ReadString('\n') does,
// but returns at once with ctx's error when ctx is done first (SIGINT or
// SIGTERM at a question such as "[y/N]"). The read that was waiting is
// abandoned: call it only where the command then ends.
func ReadLine(ctx context.Context, r *bufio.Reader) (string, error) {
	type result struct {
		line string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		line, err := r.ReadString('\n')
		done <- result{line, err}
	}()
	select {
	case res := <-done:
		return res.line, res.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}
