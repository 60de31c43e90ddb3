package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/pflag"
)

// TokenPINEnv is the environment variable a PKCS#11 token's user PIN may
// come from.
const TokenPINEnv = "SC_TOKEN_PIN"

// ExampleKeyURI is the form of a key in a token, for help and hints.
const ExampleKeyURI = "pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=sc;id=%02;object=sc-server?pin-source=/etc/space-captain/token-pin"

// TokenPIN finds the user PIN of PKCS#11 tokens whose key URIs give none
// (no pin-source): the file named by --token-pin-file (its first line,
// through the hardened reader: mode 0600, owned by the user or root), else
// the SC_TOKEN_PIN environment variable. Never a prompt, and never the
// command line: a PIN there is visible to anyone who lists processes.
//
// The zero value reads the real environment.
type TokenPIN struct {
	// File is the --token-pin-file flag's value.
	File string
	// Getenv reads the environment. Nil means os.Getenv.
	Getenv func(string) string
}

// AddFlags adds --token-pin-file to fs.
func (p *TokenPIN) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&p.File, "token-pin-file", "", "read the PKCS#11 token's user PIN from the first line of `FILE` (mode 0600), for key URIs without pin-source (else $"+TokenPINEnv+")")
}

func (p *TokenPIN) getenv(k string) string {
	if p.Getenv != nil {
		return p.Getenv(k)
	}
	return os.Getenv(k)
}

// Options returns pki.TokenOptions that read the PIN from the file or the
// environment, and log to log (nil: slog.Default()).
func (p *TokenPIN) Options(log *slog.Logger) pki.TokenOptions {
	opts := pki.TokenOptions{Logger: log}
	switch {
	case p.File != "":
		file := p.File
		opts.PIN = func() ([]byte, error) { return pki.ReadPINFile(file) }
		opts.PINFrom = "--token-pin-file " + file
	case p.getenv(TokenPINEnv) != "":
		opts.PIN = func() ([]byte, error) { return []byte(p.getenv(TokenPINEnv)), nil }
		opts.PINFrom = "$" + TokenPINEnv
	}
	return opts
}

// Tokens returns a pki.Tokens reading the PIN as Options says.
func (p *TokenPIN) Tokens(log *slog.Logger) *pki.Tokens {
	return pki.NewTokens(p.Options(log))
}

// PINValueWarning is the warning for a key URI that carries its PIN
// (pin-value), naming where it was given; "" when it carries none.
func PINValueWarning(where, ref string) string {
	if !pki.HasPINValue(ref) {
		return ""
	}
	return fmt.Sprintf("%s carries the token PIN in pin-value, which anyone who can list processes (ps) or read shell history or configuration may see; it is redacted from logs and output. Put it in a file (pin-source=FILE in the URI, or --token-pin-file FILE) or in $%s instead", where, TokenPINEnv)
}

// WarnPINValues prints PINValueWarning for each key reference that
// carries a PIN, as "PROG: warning: …" lines on w. refs are pairs of
// where (a flag name) and the value.
func WarnPINValues(w io.Writer, prog string, refs ...string) {
	for i := 0; i+1 < len(refs); i += 2 {
		if msg := PINValueWarning(refs[i], refs[i+1]); msg != "" {
			fmt.Fprintf(w, "%s: warning: %s\n", prog, msg)
		}
	}
}

// TokenHint adds what to do to an error about a key in a PKCS#11 token;
// other errors are returned as they are.
func TokenHint(err error) error {
	var te *pki.TokenError
	if !errors.As(err, &te) {
		return err
	}
	switch {
	case errors.Is(err, pki.ErrNoPKCS11):
		return WithHint(err, "keys in tokens need a build with cgo: the linux/amd64 .deb and .rpm have it, or build with CGO_ENABLED=1 and a C compiler (docs/DEPLOY.md, \"Keys in a PKCS#11 token\")")
	case errors.Is(err, pki.ErrKeyURI):
		return WithHint(err, "a key URI looks like "+ExampleKeyURI)
	case errors.Is(err, pki.ErrTokenModule):
		return WithHint(err, "module-path names the token's PKCS#11 module: SoftHSM2's is /usr/lib/softhsm/libsofthsm2.so, OpenSC's (smart cards, YubiKey PIV) /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so, Yubico's libykcs11.so; SoftHSM2 also needs its configuration (SOFTHSM2_CONF)")
	case errors.Is(err, pki.ErrTokenNotFound):
		return WithHint(err, "list the tokens the module has: pkcs11-tool --module MODULE --list-token-slots (SoftHSM2: softhsm2-util --show-slots); is the token plugged in?")
	case errors.Is(err, pki.ErrTokenPIN):
		return WithHint(err, "the PIN comes from pin-source=FILE in the key URI, else --token-pin-file FILE, else $"+TokenPINEnv)
	case errors.Is(err, pki.ErrTokenKeyNotFound):
		return WithHint(err, "list the keys in the token: pkcs11-tool --module MODULE --token-label LABEL --login --list-objects --type privkey (sc-cert init --kms makes sc-ca, sc-server and sc-server-next)")
	case errors.Is(err, pki.ErrTokenKeyExists):
		return WithHint(err, "give another object= and id=, use the key that is there (--key URI), or delete it first if no client pins it: pkcs11-tool --module MODULE --token-label LABEL --login --delete-object --type privkey --label OBJECT")
	case errors.Is(err, pki.ErrKeyUnavailable):
		return WithHint(err, "is the token present and its module working? pkcs11-tool --module MODULE --list-token-slots shows what the module sees")
	}
	return err
}

// KeyRefHelp is the end of a key flag's help: what it takes besides a
// file.
func KeyRefHelp() string {
	return "; a pkcs11: URI, or a .uri file holding one, names a key in a PKCS#11 token"
}

// IsTokenRef reports whether a key reference names a key in a token: a
// pkcs11: URI or a .uri file.
func IsTokenRef(ref string) bool {
	return pki.IsKeyURI(ref) || strings.HasSuffix(ref, pki.KeyURIExt)
}
