package certcmd

import (
	"fmt"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spf13/cobra"
)

// pinFlags are the flags every sc-cert pin command shares.
type pinFlags struct {
	knownHosts string // --known-hosts FILE; "" means pinning.DefaultStorePath
}

const pinLong = `pin manages the pins clients trust servers by, in the same known hosts file
sc-client keeps (--known-hosts FILE, default known_hosts in the space-captain
folder of the user's configuration directory: $XDG_CONFIG_HOME or ~/.config
on Linux, ~/Library/Application Support on macOS, %AppData% on Windows).

A pin is sha256// and the base64 SHA-256 of a key's SubjectPublicKeyInfo:
the form curl --pinnedpubkey and sc-client --pin take. Pins name keys, so
a certificate re-issued on the same key (sc-cert rotate) keeps them valid.

  list     what the file trusts, host by host
  add      trust a pin for a server you checked out of band
  forget   drop a server, e.g. after its key was replaced on purpose
           (its revoked keys stay revoked)
  revoke   never trust a key for a server again (e.g. it was stolen)
  unrevoke remove a revoked mark made by mistake
  show     the pins to hand to clients, from the files or the server

The file format is described in docs/TRUST.md; rollovers in docs/ROTATION.md.`

// newPinCmd returns sc-cert pin and its subcommands.
func newPinCmd(env *Env) *cobra.Command {
	f := &pinFlags{}
	cmd := &cobra.Command{
		Use:   "pin",
		Short: "List, add, forget, revoke and show the pins clients trust servers by",
		Long:  pinLong,
		Example: `  sc-cert pin show certs/ --next          # the pins to hand to pin-mode clients
  sc-cert pin list
  sc-cert pin add game.example:4242 sha256//...=
  sc-cert pin forget game.example:4242     # after a deliberate key change`,
		// Without this cobra would print help and exit 0 for a mistyped
		// subcommand, since a command with subcommands takes any argument.
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("unknown command %q for %q", args[0], c.CommandPath()),
					fmt.Sprintf("run '%s --help' for usage", c.CommandPath()))
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	def := "space-captain/known_hosts in the user's configuration directory"
	if p, err := pinning.DefaultStorePath(); err == nil {
		def = p
	}
	cmd.PersistentFlags().StringVar(&f.knownHosts, "known-hosts", "", "known hosts `FILE`, the one sc-client uses (default "+def+")")
	cmd.AddCommand(
		newPinListCmd(env, f),
		newPinAddCmd(env, f),
		newPinForgetCmd(env, f),
		newPinRevokeCmd(env, f),
		newPinUnrevokeCmd(env, f),
		newPinShowCmd(env, f),
	)
	return cmd
}

// openStore returns the store --known-hosts names.
func (f *pinFlags) openStore(env *Env) (*pinning.Store, error) {
	s, err := pinning.NewStore(pinning.StoreOptions{Path: f.knownHosts, Now: env.Now})
	if err != nil {
		return nil, cli.WithHint(err, "name the file with --known-hosts FILE")
	}
	return s, nil
}

// canonicalHost returns arg in the store's canonical HOST:PORT spelling,
// or a usage error saying what is wrong with it. The store's own rules
// decide: it renders a line for arg and reads back its host, so the CLI
// never disagrees with the file format (pinning exports no such function).
// The pin in that line is a placeholder that names no real key.
func canonicalHost(arg string) (string, error) {
	line, err := pinning.Line(arg, pinning.PinOfSPKI(nil))
	if err == nil {
		var e pinning.Entry
		if e, err = pinning.ParseLine(line); err == nil {
			return e.Host, nil
		}
	}
	return "", cli.WithCode(cli.ExitUsage, fmt.Errorf("server address: %w", err),
		"give the server as HOST:PORT, e.g. game.example:4242, 127.0.0.1:4242 or [::1]:4242")
}

// pinHint is the hint for a malformed pin.
const pinHint = "a pin is sha256// and 44 base64 characters (or 64 hex digits); sc-cert pin show FILE|HOST:PORT prints them"
