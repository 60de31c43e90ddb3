package certcmd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spf13/cobra"
)

type pinListOptions struct {
	*pinFlags
	json bool
}

func newPinListCmd(env *Env, f *pinFlags) *cobra.Command {
	o := &pinListOptions{pinFlags: f}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the servers the known hosts file trusts, with their pins",
		Long: `list prints every server in the known hosts file with its pins: the current
one (the key the server presented at the last verified connection, or the
first pin added) and the backups (announced next keys, pins added by hand, a
retired key not yet dropped), each with when it was first recorded, when a
verified connection last presented it, and how it was learned:

  first-use   recorded on the first connection (trust on first use)
  announced   the server announced it as its next key (KEYS), inside a
              connection verified with its current key
  added       added by a person with sc-cert pin add

Any of a server's pins is accepted. A line that cannot be read is reported on
standard error with its line number, and its server fails closed (it is
neither trusted nor treated as new) until the line is fixed or the server is
forgotten; the other servers are listed as usual and the exit code is 0.`,
		Example: `  sc-cert pin list
  sc-cert pin list --known-hosts ./known_hosts --json`,
		Args: cli.ExactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPinList(cmd.OutOrStdout(), cmd.ErrOrStderr(), env, o)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print the hosts and any unreadable lines as JSON")
	return cmd
}

// pinRecordJSON is one pin of a host in --json output.
type pinRecordJSON struct {
	Pin       string    `json:"pin"`
	Role      string    `json:"role"` // "current", "backup" or "revoked"
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	Via       string    `json:"via,omitempty"` // first-use, announced, added
}

type hostJSON struct {
	Host string          `json:"host"`
	Line int             `json:"line,omitempty"`
	Pins []pinRecordJSON `json:"pins"`
}

type lineProblemJSON struct {
	Line  int    `json:"line"`
	Host  string `json:"host,omitempty"`
	Error string `json:"error"`
}

type pinListJSON struct {
	KnownHosts string            `json:"known_hosts"`
	Hosts      []hostJSON        `json:"hosts"`
	Problems   []lineProblemJSON `json:"problems"`
}

func entryJSON(e pinning.Entry) hostJSON {
	h := hostJSON{Host: e.Host, Line: e.Line, Pins: []pinRecordJSON{}}
	for _, r := range e.Pins {
		role := "backup"
		if r.Current {
			role = "current"
		}
		h.Pins = append(h.Pins, pinRecordJSON{Pin: r.Pin.String(), Role: role, FirstSeen: r.FirstSeen, LastSeen: r.LastSeen, Via: string(r.Origin)})
	}
	for _, r := range e.Revoked {
		h.Pins = append(h.Pins, pinRecordJSON{Pin: r.Pin.String(), Role: "revoked", FirstSeen: r.FirstSeen, Via: string(r.Origin)})
	}
	return h
}

func runPinList(stdout, stderr io.Writer, env *Env, o *pinListOptions) error {
	store, err := o.openStore(env)
	if err != nil {
		return err
	}
	entries, problems, err := store.List()
	if err != nil {
		return cli.WithHint(fmt.Errorf("reading the known hosts file: %w", err), "name another file with --known-hosts FILE")
	}
	out := pinListJSON{KnownHosts: store.Path(), Hosts: []hostJSON{}, Problems: []lineProblemJSON{}}
	for _, e := range entries {
		out.Hosts = append(out.Hosts, entryJSON(e))
	}
	// Unreadable lines are warnings, not failures: the rest of the file is
	// still good, and the hint under each says how to recover.
	for _, p := range problems {
		out.Problems = append(out.Problems, lineProblemJSON{Line: p.Line, Host: p.Host, Error: p.Err.Error()})
		fmt.Fprintf(stderr, "sc-cert: warning: %v\n", p)
		for _, h := range cli.TrustHints(p) {
			fmt.Fprintf(stderr, "sc-cert: hint: %s\n", h)
		}
	}
	if o.json {
		return cli.PrintJSON(stdout, out)
	}
	if len(entries) == 0 {
		why := "it has no hosts"
		if _, err := os.Stat(store.Path()); errors.Is(err, fs.ErrNotExist) {
			why = "it does not exist yet; sc-client creates it on its first connection"
		}
		fmt.Fprintf(stderr, "sc-cert: no hosts in the known hosts file %s: %s\n", store.Path(), why)
		return nil
	}
	fmt.Fprintf(stdout, "# %s\n", store.Path())
	for _, h := range out.Hosts {
		fmt.Fprintf(stdout, "%s (line %d)\n", h.Host, h.Line)
		for _, r := range h.Pins {
			fmt.Fprintf(stdout, "  %-7s %s  %s\n", r.Role, r.Pin, describeRecord(r))
		}
	}
	return nil
}

// describeRecord says when a pin was seen and how it was learned.
func describeRecord(r pinRecordJSON) string {
	var parts []string
	if !r.FirstSeen.IsZero() {
		parts = append(parts, "first "+r.FirstSeen.UTC().Format(time.RFC3339))
	}
	switch {
	case r.Role == "revoked":
		parts = append(parts, "never trusted again")
	case !r.LastSeen.IsZero():
		parts = append(parts, "last "+r.LastSeen.UTC().Format(time.RFC3339))
	default:
		parts = append(parts, "not seen yet")
	}
	if r.Via != "" {
		parts = append(parts, "via "+r.Via)
	}
	return strings.Join(parts, ", ")
}
