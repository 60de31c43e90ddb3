package certcmd

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/hosts"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spf13/pflag"
)

// hostsFileEnv is sc-client's variable naming its hosts file (set and
// empty: none); pin add --to hosts edits the same file.
const hostsFileEnv = cli.HostsFileEnv

// pinTarget says where pin add writes: the known hosts store (what trust
// on first use learns) or sc-client's hosts file (what the operator gives).
type pinTarget struct {
	to        string // --to known-hosts|hosts
	hostsFile string // --hosts-file FILE
}

func (t *pinTarget) addFlags(fs *pflag.FlagSet) {
	def, err := hosts.DefaultPath()
	if err != nil {
		def = "space-captain/hosts in the user's configuration directory"
	}
	fs.StringVar(&t.to, "to", "known-hosts", "where to write the pins, `PLACE`: known-hosts (the store trust on first use keeps) or hosts (sc-client's per-host settings, where pins the operator gives win over the store)")
	fs.StringVar(&t.hostsFile, "hosts-file", def, "sc-client's hosts `FILE`, for --to hosts ($"+hostsFileEnv+" instead, when set)")
}

// hostsPath returns the hosts file --to hosts edits.
func (t *pinTarget) hostsPath(fs *pflag.FlagSet) (string, error) {
	path := t.hostsFile
	if !fs.Changed("hosts-file") {
		if v, ok := os.LookupEnv(hostsFileEnv); ok {
			path = v
		}
	}
	if path == "" {
		return "", cli.Usagef("--to hosts: no hosts file (--hosts-file or $%s is empty)", hostsFileEnv)
	}
	return path, nil
}

// runPinAddHosts writes pins into the Host block named after the server's
// host in sc-client's hosts file, with a server line for a new block.
func runPinAddHosts(stdout io.Writer, path, host string, set pinning.Set, jsonOut, revoked bool) error {
	name, _, err := net.SplitHostPort(host)
	if err != nil {
		return cli.Usagef("server address %q: want HOST:PORT", host)
	}
	pins := pinStrings(set.Pins())
	key := "pin"
	if revoked {
		key = "revoked-pin"
	}
	res, err := hosts.AddValues(path, name, host, key, pins)
	if err != nil {
		if _, ok := err.(*hosts.ParseError); ok {
			return cli.WithHint(err, "fix that line first: the file was not changed")
		}
		return err
	}
	if jsonOut {
		return cli.PrintJSON(stdout, struct {
			HostsFile string   `json:"hosts_file"`
			Host      string   `json:"host"`
			Server    string   `json:"server"`
			NewBlock  bool     `json:"new_block"`
			Line      int      `json:"line"`
			Added     []string `json:"added"`
		}{path, name, host, res.NewBlock, res.Line, nonNilStrings(res.Added)})
	}
	switch {
	case len(res.Added) == 0:
		fmt.Fprintf(stdout, "Host %s in %s (line %d) already has %s: nothing changed\n", name, path, res.Line, strings.Join(pins, ", "))
	case res.NewBlock:
		fmt.Fprintf(stdout, "Added Host %s (server %s) to %s, line %d, with the pin(s):\n", name, host, path, res.Line)
	default:
		fmt.Fprintf(stdout, "Added to Host %s in %s (line %d) the pin(s):\n", name, path, res.Line)
	}
	for _, p := range res.Added {
		fmt.Fprintf(stdout, "  %s\n", p)
	}
	switch {
	case len(res.Added) > 0 && revoked:
		fmt.Fprintf(stdout, "sc-client --host %s now refuses a server presenting these keys (revoked-pin)\n", name)
	case len(res.Added) > 0:
		fmt.Fprintf(stdout, "sc-client --host %s now trusts the server by these pins (pin mode: the known hosts store is not consulted for it)\n", name)
	}
	return nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
