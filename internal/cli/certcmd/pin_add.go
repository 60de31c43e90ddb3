package certcmd

import (
	"fmt"
	"io"
	"strings"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spf13/cobra"
)

type pinAddOptions struct {
	*pinFlags
	json   bool
	target pinTarget
	// hostsFile is the hosts file --to hosts writes; "" writes the store.
	hostsFile string
	// revoked adds the pins as revoked, not trusted.
	revoked bool
}

func newPinAddCmd(env *Env, f *pinFlags) *cobra.Command {
	o := &pinAddOptions{pinFlags: f}
	cmd := &cobra.Command{
		Use:   "add HOST:PORT PIN...",
		Short: "Trust a server's pin, checked out of band, in the known hosts file",
		Long: `add trusts PIN for the server HOST:PORT in the known hosts file, so that
sc-client connects to it without trusting on first use. Check the pin out of
band first: ask the operator, who gets it from sc-cert pin show on the
server.

For a server not in the file yet, the first PIN becomes its current pin and
any others its backups (give the next pin too, from sc-cert pin show --next,
and the client survives the server's next key rollover). For a server
already in the file, each new PIN is added as a backup: the first verified
connection that presents it makes it current. Pins already on file are left
as they are, so add can be run again safely. Pins added here are kept until
the server is forgotten, whatever the server later announces.

--to hosts writes the pins into sc-client's hosts file instead (man
sc-client-hosts): into the block "Host HOST", appended with a server line
when there is none, so that sc-client --host HOST connects with them. The
two places differ in who speaks: the known hosts file is what trust on
first use learns, the hosts file is what the operator gives. Pins in the
hosts file (or on the command line) win: they put sc-client in pin mode for
that host, and the known hosts file is then not consulted for it.

With --revoked the pins are marked revoked instead of trusted: in the known
hosts file as sc-cert pin revoke does, in the hosts file as revoked-pin
lines (sc-client --revoked-pin), which pin-mode clients refuse.

PIN is sha256//BASE64 (as curl --pinnedpubkey takes it), bare base64, or 64
hex digits with or without colons; several may be given, or one list
separated by ";".`,
		Example: `  sc-cert pin add game.example:4242 sha256//PN5c5d1wBtw5Kb6aNSzB/G8y4wXvKbmBDDi7RK1F0lM=
  sc-cert pin add 127.0.0.1:4242 "$(sc-cert pin show certs/ --next --json | jq -r .pins)"
  sc-cert pin add --known-hosts ./known_hosts '[::1]:4242' sha256//...= sha256//...=
  sc-cert pin add --to hosts game.example:4242 sha256//...=   # then: sc-client echo hi --host game.example`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) < 2 {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("%s: want HOST:PORT and at least one PIN, got %d argument(s)", c.CommandPath(), len(args)),
					fmt.Sprintf("run '%s --help' for usage", c.CommandPath()))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch o.target.to {
			case "known-hosts":
			case "hosts":
				if cmd.Flags().Changed("known-hosts") {
					return cli.Usagef("--known-hosts can't be used with --to hosts, which writes the hosts file")
				}
				path, err := o.target.hostsPath(cmd.Flags())
				if err != nil {
					return err
				}
				o.hostsFile = path
			default:
				return cli.Usagef("--to %q: want known-hosts or hosts", o.target.to)
			}
			return runPinAdd(cmd.OutOrStdout(), env, args[0], args[1:], o)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print the host's entry after the change as JSON")
	cmd.Flags().BoolVar(&o.revoked, "revoked", false, "mark the pins revoked (never trusted) instead of trusted: sc-cert pin revoke, or with --to hosts revoked-pin lines")
	o.target.addFlags(cmd.Flags())
	return cmd
}

type pinAddJSON struct {
	KnownHosts string   `json:"known_hosts"`
	Host       string   `json:"host"`
	NewHost    bool     `json:"new_host"`
	Added      []string `json:"added"`
	Entry      hostJSON `json:"entry"`
}

func runPinAdd(stdout io.Writer, env *Env, hostArg string, pinArgs []string, o *pinAddOptions) error {
	host, herr := canonicalHost(hostArg)
	set, perr := pinning.ParseSet(pinArgs...)
	if herr != nil || perr != nil {
		// Arguments given the other way round are a likely slip.
		if _, err := pinning.ParsePin(hostArg); err == nil && len(pinArgs) == 1 {
			if _, err := canonicalHost(pinArgs[0]); err == nil {
				return cli.Usagef("the arguments are HOST:PORT then PIN, not PIN then HOST:PORT: sc-cert pin add %s %s", pinArgs[0], hostArg)
			}
		}
		if herr != nil {
			return herr
		}
		return cli.WithCode(cli.ExitUsage, perr, pinHint)
	}
	if o.hostsFile != "" {
		return runPinAddHosts(stdout, o.hostsFile, host, set, o.json, o.revoked)
	}
	if o.revoked {
		for _, p := range set.Pins() {
			if err := runPinRevoke(stdout, env, host, p.String(), &pinRevokeOptions{pinFlags: o.pinFlags, json: o.json}, true); err != nil {
				return err
			}
		}
		return nil
	}
	store, err := o.openStore(env)
	if err != nil {
		return err
	}
	// The entry is read with List rather than Lookup: Lookup fails closed for
	// every unknown host while some line's host is unreadable, but a person
	// adding a pin is not trusting on first use, and Add allows it.
	before, known, err := findEntry(store, host)
	if err != nil {
		return err
	}
	if err := store.Add(host, set.Pins()...); err != nil {
		return err
	}
	after, _, err := findEntry(store, host)
	if err != nil {
		return err
	}
	out := pinAddJSON{KnownHosts: store.Path(), Host: host, NewHost: !known, Added: []string{}, Entry: entryJSON(after)}
	for _, p := range set.Pins() {
		if !known || !before.Set().Contains(p) {
			out.Added = append(out.Added, p.String())
		}
	}
	if o.json {
		return cli.PrintJSON(stdout, out)
	}
	switch {
	case len(out.Added) == 0:
		fmt.Fprintf(stdout, "%s already trusts %s in %s: nothing changed\n", host, strings.Join(pinStrings(set.Pins()), ", "), store.Path())
	case !known:
		fmt.Fprintf(stdout, "Added %s to %s, trusted with:\n", host, store.Path())
	default:
		fmt.Fprintf(stdout, "Added %s as backup pin(s) of %s in %s; it is now trusted with:\n", strings.Join(out.Added, ", "), host, store.Path())
	}
	if len(out.Added) > 0 {
		for _, r := range out.Entry.Pins {
			fmt.Fprintf(stdout, "  %-7s %s\n", r.Role, r.Pin)
		}
	}
	return nil
}

// findEntry returns host's entry (host in canonical form), or the
// *pinning.LineError of an unreadable line for it.
func findEntry(store *pinning.Store, host string) (pinning.Entry, bool, error) {
	entries, problems, err := store.List()
	if err != nil {
		return pinning.Entry{}, false, err
	}
	for _, p := range problems {
		if p.Host == host {
			return pinning.Entry{}, false, p
		}
	}
	for _, e := range entries {
		if e.Host == host {
			return e, true, nil
		}
	}
	return pinning.Entry{}, false, nil
}

func pinStrings(pins []pinning.Pin) []string {
	s := make([]string, len(pins))
	for i, p := range pins {
		s[i] = p.String()
	}
	return s
}
