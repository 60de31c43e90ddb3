package certcmd

import (
	"io"
	"log/slog"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pki"
)

// tokenPIN returns the token PIN source wired to the environment.
func (e *Env) tokenPIN() *cli.TokenPIN { return &cli.TokenPIN{Getenv: e.Getenv} }

// openTokens returns the pki.Tokens a command opens keys in PKCS#11 tokens
// through, after warning on stderr about each key reference that carries
// its PIN (refs: pairs of flag and value). The command closes it when it
// ends. Failed signatures are not logged: the command returns them.
func openTokens(stderr io.Writer, pin *cli.TokenPIN, refs ...string) *pki.Tokens {
	cli.WarnPINValues(stderr, "sc-cert", refs...)
	return pin.Tokens(slog.New(slog.DiscardHandler))
}

// display is a key reference as it may be printed: a URI's PIN redacted.
func display(ref string) string { return pki.RedactKeyURI(ref) }
