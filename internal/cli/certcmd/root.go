package certcmd

import (
	"os"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spf13/cobra"
)

// Exit codes of sc-cert beyond the shared ones (0 ok, 1 error, 2 usage,
// 130 interrupted). verify uses them to say which check failed.
const (
	ExitKeyMismatch  = cli.ExitFirstCustom + iota // 3: the key does not belong to the certificate
	ExitExpired                                   // 4: expired or not yet valid
	ExitExpiresSoon                               // 5: valid, but for less than --check-expiry
	ExitPinMismatch                               // 6: none of the --pin values matches
	ExitChainInvalid                              // 7: does not verify against --ca
)

// Env is what the commands take from outside: the environment, the
// terminal and the clock. The zero value means the real ones.
type Env struct {
	// Getenv reads environment variables (SC_KEY_PASSWORD). Nil means
	// os.Getenv.
	Getenv func(string) string
	// Stdin is where passphrase prompts read from, only when it is a
	// terminal. Nil means os.Stdin.
	Stdin *os.File
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

func (e *Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// passphrase returns a passphrase reader wired to the environment; the
// command sets Prompt to its stderr when it runs.
func (e *Env) passphrase() *cli.Passphrase {
	return &cli.Passphrase{Getenv: e.Getenv, Stdin: e.Stdin}
}

const rootLong = `sc-cert makes, inspects, checks and rotates the keys and certificates of a
Space Captain server.

The default layout (sc-cert init) is a local CA that issues the server
certificate: CA-file clients trust ca.crt and keep trusting every re-issue,
pin and TOFU clients pin server.key and keep trusting every re-issue on the
same key, and server.next.key is made ahead of time so its pin can be
published before the key rollover (sc-cert rotate --promote-next).

Passphrases of encrypted keys come from --password-file FILE, else the
SC_KEY_PASSWORD environment variable, else a prompt when standard input is a
terminal.

Exit codes:
  0    success
  1    error (unreadable or malformed file, wrong passphrase, network error, ...)
  2    usage error (unknown flag, missing or conflicting arguments)
  3    verify: the key does not belong to the certificate
  4    verify: the certificate is expired or not yet valid
  5    verify: the certificate expires within --check-expiry
  6    verify: no --pin matches the certificate's key;
       pin show: the server's key is not one on file for it
  7    verify: the certificate does not verify against --ca
  130  interrupted`

// NewRootCmd returns the sc-cert root command with all its subcommands.
func NewRootCmd(env Env) *cobra.Command {
	root := &cobra.Command{
		Use:   "sc-cert",
		Short: "Make, inspect, verify and rotate Space Captain certificates",
		Long:  rootLong,
		Example: `  sc-cert init                         # certs/: local CA, server cert, keys
  sc-cert inspect certs/server.crt
  sc-cert fingerprint localhost:4242   # the pin a client should use
  sc-cert verify --cert certs/server.crt --key certs/server.key --ca certs/ca.crt
  sc-cert rotate                       # re-issue certs/server.crt, same key
  sc-cert pin show certs/ --next       # the pins to hand to pin-mode clients`,
	}
	cli.SetupRoot(root)
	for _, c := range subcommands(&env) {
		root.AddCommand(c)
	}
	return root
}

// subcommands lists sc-cert's commands in the order help shows them. A new
// command (sc-cert pin …) is one more line here and a file of its own.
func subcommands(env *Env) []*cobra.Command {
	return []*cobra.Command{
		newInitCmd(env),
		newCreateCmd(env),
		newInspectCmd(env),
		newFingerprintCmd(env),
		newVerifyCmd(env),
		newRotateCmd(env),
		newExportNextCmd(env),
		newPinCmd(env),
		newClientsCmd(env),
		newTicketKeysCmd(env),
	}
}
