package certcmd

import (
	"errors"
	"fmt"
	"io"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spf13/cobra"
)

type pinForgetOptions struct {
	*pinFlags
	json bool
}

func newPinForgetCmd(env *Env, f *pinFlags) *cobra.Command {
	o := &pinForgetOptions{pinFlags: f}
	cmd := &cobra.Command{
		Use:   "forget HOST:PORT",
		Short: "Drop a server and all its pins from the known hosts file",
		Long: `forget removes the server HOST:PORT from the known hosts file: its line with
all its pins, and any unreadable or duplicate line for it. The next sc-client
connection treats it as a server never seen before (trusted on first use, or
refused with --tofu off).

This is the command sc-client prints when a server presents a key that is
not on file. Keys revoked for the server stay revoked: its revoked marks
are kept (as OpenSSH keeps @revoked lines), so trust on first use never
accepts them. Run it only when you know the key was replaced on purpose (the
operator says so, and gives you the new pin to compare): the warning may
also mean someone is impersonating the server. Forgetting a server that is
not in the file changes nothing and is not an error.`,
		Example: `  sc-cert pin forget game.example:4242
  sc-cert pin forget --known-hosts ./known_hosts '[::1]:4242'
  sc-cert pin forget 127.0.0.1:4242 && sc-cert pin add 127.0.0.1:4242 sha256//...=   # replace, with the new pin checked`,
		Args: cli.ExactArgs(1, "one HOST:PORT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPinForget(cmd.OutOrStdout(), env, args[0], o)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print what was removed as JSON")
	return cmd
}

type pinForgetJSON struct {
	KnownHosts string          `json:"known_hosts"`
	Host       string          `json:"host"`
	Removed    bool            `json:"removed"`
	Pins       []pinRecordJSON `json:"pins"`                      // the pins it had, when its line could be read
	BadLine    int             `json:"unreadable_line,omitempty"` // the unreadable line removed with it
}

func runPinForget(stdout io.Writer, env *Env, hostArg string, o *pinForgetOptions) error {
	host, err := canonicalHost(hostArg)
	if err != nil {
		return err
	}
	store, err := o.openStore(env)
	if err != nil {
		return err
	}
	out := pinForgetJSON{KnownHosts: store.Path(), Host: host, Pins: []pinRecordJSON{}}
	// What the host had, to say what is gone; an unreadable line for it is
	// exactly what forget is for, so it is noted, not fatal.
	before, _, err := findEntry(store, host)
	var le *pinning.LineError
	switch {
	case errors.As(err, &le):
		out.BadLine = le.Line
	case err != nil:
		return err
	default:
		out.Pins = entryJSON(before).Pins
	}
	if out.Removed, err = store.Forget(host); err != nil {
		return err
	}
	if o.json {
		return cli.PrintJSON(stdout, out)
	}
	if !out.Removed {
		fmt.Fprintf(stdout, "%s is not in %s: nothing changed\n", host, store.Path())
		return nil
	}
	fmt.Fprintf(stdout, "Forgot %s in %s", host, store.Path())
	if out.BadLine > 0 {
		fmt.Fprintf(stdout, " (with its unreadable line %d)", out.BadLine)
	}
	fmt.Fprintln(stdout)
	for _, r := range out.Pins {
		fmt.Fprintf(stdout, "  was %-7s %s\n", r.Role, r.Pin)
	}
	if after, ok, err := store.Lookup(host); err == nil && ok && len(after.Revoked) > 0 {
		for _, r := range after.Revoked {
			fmt.Fprintf(stdout, "  kept revoked %s (never trusted again; sc-cert pin unrevoke removes it)\n", r.Pin)
		}
	}
	fmt.Fprintf(stdout, "The next connection to it is a first use: compare the key it presents with the pin its operator gives you.\n")
	return nil
}
