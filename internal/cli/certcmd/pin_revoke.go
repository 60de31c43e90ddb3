package certcmd

import (
	"fmt"
	"io"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spf13/cobra"
)

type pinRevokeOptions struct {
	*pinFlags
	json bool
}

type pinRevokeJSON struct {
	KnownHosts string `json:"known_hosts"`
	Host       string `json:"host"`
	Pin        string `json:"pin"`
	Changed    bool   `json:"changed"`
}

func newPinRevokeCmd(env *Env, f *pinFlags) *cobra.Command {
	o := &pinRevokeOptions{pinFlags: f}
	cmd := &cobra.Command{
		Use:   "revoke HOST:PORT PIN",
		Short: "Never trust a key for a server again (a stolen or retired key)",
		Long: `revoke marks PIN revoked for the server HOST:PORT in the known hosts file,
as OpenSSH's @revoked does: the pin leaves the server's trusted pins, and from
then on sc-client refuses a server presenting that key, with a warning that
says it was revoked on this machine. No announcement of the server brings it
back, and "sc-cert pin forget" keeps the mark, so trust on first use never
accepts the key either. Only "sc-cert pin unrevoke" removes it.

A server's operator revokes keys for every trust-on-first-use client at once
through the server (sc-server --revoked-keys, sc-cert rotate --revoke-old);
this command is for the operator of one client machine, e.g. after a
published notice. Revoking a server that is not in the file gives it a line
with only the mark. Clients of versions before revocation keep the mark
but do not enforce it (docs/TRUST.md).`,
		Example: `  sc-cert pin revoke game.example:4242 sha256//...=
  sc-cert pin list    # the mark shows as "revoked"`,
		Args: cli.ExactArgs(2, "HOST:PORT and PIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPinRevoke(cmd.OutOrStdout(), env, args[0], args[1], o, true)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print what changed as JSON")
	return cmd
}

func newPinUnrevokeCmd(env *Env, f *pinFlags) *cobra.Command {
	o := &pinRevokeOptions{pinFlags: f}
	cmd := &cobra.Command{
		Use:   "unrevoke HOST:PORT PIN",
		Short: "Remove a revoked mark made by mistake",
		Long: `unrevoke removes the revoked mark of PIN for HOST:PORT from the known hosts
file. The key is not trusted again by this alone: add it (sc-cert pin add)
or let trust on first use learn it. Run it only when you know the
revocation was a mistake: a revoked key may have been stolen.`,
		Example: `  sc-cert pin unrevoke game.example:4242 sha256//...=`,
		Args:    cli.ExactArgs(2, "HOST:PORT and PIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPinRevoke(cmd.OutOrStdout(), env, args[0], args[1], o, false)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print what changed as JSON")
	return cmd
}

func runPinRevoke(stdout io.Writer, env *Env, hostArg, pinArg string, o *pinRevokeOptions, revoke bool) error {
	host, err := canonicalHost(hostArg)
	if err != nil {
		return err
	}
	pin, err := pinning.ParsePin(pinArg)
	if err != nil {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("reading the pin %q: %w", pinArg, err),
			"a pin is sha256//BASE64, as sc-cert fingerprint --format pin prints it")
	}
	store, err := o.openStore(env)
	if err != nil {
		return err
	}
	out := pinRevokeJSON{KnownHosts: store.Path(), Host: host, Pin: pin.String()}
	if revoke {
		out.Changed, err = store.Revoke(host, pin)
	} else {
		out.Changed, err = store.Unrevoke(host, pin)
	}
	if err != nil {
		return err
	}
	if o.json {
		return cli.PrintJSON(stdout, out)
	}
	switch {
	case revoke && out.Changed:
		fmt.Fprintf(stdout, "Revoked %v for %s in %s: sc-client refuses a server presenting it from now on\n", pin, host, store.Path())
	case revoke:
		fmt.Fprintf(stdout, "%v was already revoked for %s in %s: nothing changed\n", pin, host, store.Path())
	case out.Changed:
		fmt.Fprintf(stdout, "Removed the revoked mark of %v for %s in %s; the key is not trusted until added or learned again\n", pin, host, store.Path())
	default:
		fmt.Fprintf(stdout, "%v is not revoked for %s in %s: nothing changed\n", pin, host, store.Path())
	}
	return nil
}
