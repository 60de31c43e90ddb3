package clientcmd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/hosts"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// HostsFileEnv names the hosts file when --hosts-file does not; set and
// empty, it means none (what every test sets, with cli.NoConfigFiles, so
// that no user's file changes a test).
const HostsFileEnv = cli.HostsFileEnv

// hostOptions pick the per-host settings of the hosts file, and record
// where each setting came from once they are applied.
type hostOptions struct {
	host      string // --host NAME
	hostsFile string // --hosts-file FILE; "" none

	file    string            // the hosts file read; "" for none
	origins map[string]string // flag -> "command line", FILE:LINE or "default"
	trust   string            // the file's trust key for this host, "" none
}

// trustModes are the values of the hosts file's trust key, and the keys
// each mode uses; the others are ignored under it.
var trustModes = map[string][]string{
	"tofu":     {"known-hosts", "tofu"},
	"pin":      {"pin"},
	"ca":       {"ca"},
	"ca+pin":   {"ca", "pin"},
	"insecure": {"insecure"},
}

// trustKeys are the settings that decide how a server is trusted. Given
// on the command line, any of them replaces all of the file's.
var trustKeys = []string{"ca", "pin", "insecure", "known-hosts", "tofu"}

// notHostKey reports whether a flag cannot be set in the hosts file.
func notHostKey(name string) bool {
	switch name {
	case "host", "hosts-file", "json", "help", "version":
		return true
	}
	return false
}

// addHostFlags adds --host and --hosts-file to fs.
func (o *options) addHostFlags(fs *pflag.FlagSet) {
	def, err := hosts.DefaultPath()
	if err != nil {
		def = "space-captain/hosts in the user's configuration directory"
	}
	fs.StringVar(&o.hosts.host, "host", "", "use the hosts file's settings for `NAME` (server, trust, pins, CA, timeout, ...); the server is NAME:4242 unless they name another")
	fs.StringVar(&o.hosts.hostsFile, "hosts-file", def, "per-host settings `FILE`, blocks of Host PATTERN then key value lines, like ssh_config (man sc-client-hosts); '' reads none, and so does $"+HostsFileEnv+" set empty")
}

// hostsPath returns the hosts file to read: --hosts-file, else
// $SC_CLIENT_HOSTS_FILE, else the default; explicit says whether it was
// named (then it must exist).
func (o *options) hostsPath(fs *pflag.FlagSet) (path string, explicit bool) {
	if fs.Changed("hosts-file") {
		return o.hosts.hostsFile, true
	}
	if v, ok := os.LookupEnv(HostsFileEnv); ok {
		return v, true
	}
	return o.hosts.hostsFile, false
}

// applyHosts sets the flags the command line did not set from the hosts
// file's settings for the host: --host NAME, else the host of --server.
// Command-line flags win, and any trust flag on the command line (--ca,
// --pin, --insecure, --known-hosts, --tofu) replaces all the file's trust
// settings. Every key of the file is checked, in every block.
func (o *options) applyHosts(cmd *cobra.Command) error {
	fs := cmd.Flags()
	h := &o.hosts
	h.origins = map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			h.origins[f.Name] = "command line"
		} else {
			h.origins[f.Name] = "default"
		}
	})
	path, explicit := o.hostsPath(fs)
	if path == "" {
		return o.hostDefaultServer(fs)
	}
	file, err := hosts.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist) && !explicit:
		return o.hostDefaultServer(fs)
	case err != nil:
		var pe *hosts.ParseError
		if errors.As(err, &pe) {
			return cli.Usagef("%v", err)
		}
		return cli.WithHint(err, "name another with --hosts-file FILE, or none with --hosts-file ''")
	}
	h.file = path
	for _, b := range file.Blocks {
		for _, s := range b.Settings {
			if err := checkHostKey(fs, path, s); err != nil {
				return err
			}
		}
	}
	name := h.host
	if name == "" {
		name = hostOf(o.server)
	}
	settings := file.Resolve(name)
	byKey := map[string][]hosts.Setting{}
	var keys []string
	for _, s := range settings {
		if _, ok := byKey[s.Key]; !ok {
			keys = append(keys, s.Key)
		}
		byKey[s.Key] = append(byKey[s.Key], s)
	}
	trustOnCommandLine := false
	for _, k := range trustKeys {
		trustOnCommandLine = trustOnCommandLine || fs.Changed(k)
	}
	if t, ok := byKey["trust"]; ok && !trustOnCommandLine {
		h.trust = t[0].Value
	}
	for _, key := range keys {
		if key == "trust" {
			continue
		}
		f := fs.Lookup(key)
		lines := byKey[key]
		if f.Changed {
			continue
		}
		if slices.Contains(trustKeys, key) && (trustOnCommandLine || (h.trust != "" && !slices.Contains(trustModes[h.trust], key))) {
			continue
		}
		if _, list := f.Value.(pflag.SliceValue); len(lines) > 1 && !list {
			return cli.Usagef("%s:%d: %s is given twice for %s (also on line %d); it takes one value", path, lines[1].Line, key, name, lines[0].Line)
		}
		for _, s := range lines {
			if err := f.Value.Set(expandHome(s.Value)); err != nil {
				return cli.Usagef("%s:%d: %s: %v", path, s.Line, key, err)
			}
		}
		h.origins[key] = fmt.Sprintf("%s:%d", path, lines[0].Line)
	}
	if h.trust != "" {
		where := fmt.Sprintf("%s:%d", path, byKey["trust"][0].Line)
		for _, need := range trustModes[h.trust] {
			if need == "pin" && len(o.pins) == 0 || need == "ca" && o.ca == "" {
				return cli.Usagef("%s: trust %s for %s, but no %s is set for it", where, h.trust, name, need)
			}
		}
		if h.trust == "insecure" {
			o.insecure = true
			h.origins["insecure"] = where
		}
	}
	return o.hostDefaultServer(fs)
}

// hostDefaultServer makes --host NAME the server NAME:4242 when neither
// the command line nor the hosts file named the server.
func (o *options) hostDefaultServer(fs *pflag.FlagSet) error {
	if o.hosts.host == "" || o.hosts.origins["server"] != "default" {
		return nil
	}
	if err := fs.Lookup("server").Value.Set(o.hosts.host); err != nil {
		return err
	}
	o.hosts.origins["server"] = "--host"
	return nil
}

// checkHostKey refuses a key that is no sc-client setting, or a trust
// value that is no mode.
func checkHostKey(fs *pflag.FlagSet, path string, s hosts.Setting) error {
	if s.Key == "trust" {
		if _, ok := trustModes[s.Value]; !ok {
			return cli.Usagef("%s:%d: trust %q: want tofu, pin, ca, ca+pin or insecure", path, s.Line, s.Value)
		}
		return nil
	}
	if f := fs.Lookup(s.Key); f == nil || notHostKey(s.Key) {
		return cli.WithHint(cli.Usagef("%s:%d: unknown key %q", path, s.Line, s.Key),
			"the keys are trust and sc-client's flag names without the dashes (server, ca, pin, tofu, timeout, ...): man sc-client-hosts")
	}
	return nil
}

// hostOf returns the host part of a --server value.
func hostOf(server string) string {
	if h, _, err := net.SplitHostPort(server); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(server, "["), "]")
}

// expandHome turns a leading ~/ into the home directory, as ssh_config
// does for file names.
func expandHome(v string) string {
	if rest, ok := strings.CutPrefix(v, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return home + string(os.PathSeparator) + rest
		}
	}
	return v
}

// trustMode names how the server will be trusted with the settings in o.
func (o *options) trustMode() string {
	switch {
	case o.plaintext:
		return "none (--plaintext)"
	case o.insecure:
		return "insecure"
	case o.ca != "" && len(o.pins) > 0:
		return "ca+pin"
	case o.ca != "":
		return "ca"
	case len(o.pins) > 0:
		return "pin"
	}
	return "tofu"
}

// newConfigCmd returns sc-client config and its show subcommand.
func newConfigCmd(o *options, env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show the settings sc-client uses for a host",
		Long: `config shows the settings sc-client puts together for a host from the hosts
file (--hosts-file, man sc-client-hosts) and the command line.`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("unknown command %q for %q", args[0], c.CommandPath()),
					fmt.Sprintf("run '%s --help' for usage", c.CommandPath()))
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	show := &cobra.Command{
		Use:   "show HOST",
		Short: "Print the effective settings for HOST and where each came from",
		Long: `show prints every setting sc-client would use for HOST (as --host HOST would
select it), with where it came from: the command line, the hosts file and
line, or the default; and the trust mode they make. Flags given here
override the file, as they do for every command.`,
		Example: "  sc-client config show game\n  sc-client config show game --tofu off",
		Args:    cli.ExactArgs(1, "HOST"),
		RunE: func(c *cobra.Command, args []string) error {
			if !c.Flags().Changed("host") {
				o.hosts.host = args[0]
			}
			if err := o.applyHosts(c); err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			return o.printSettings(c.OutOrStdout(), c.Flags())
		},
	}
	o.addFlags(show.Flags())
	o.addHostFlags(show.Flags())
	cmd.AddCommand(show)
	return cmd
}

// printSettings writes the effective settings, each with its origin.
func (o *options) printSettings(w io.Writer, fs *pflag.FlagSet) error {
	h := &o.hosts
	file := h.file
	if file == "" {
		file = "none"
	}
	fmt.Fprintf(w, "# sc-client settings for %s; hosts file: %s\n", o.hosts.host, file)
	trustFrom := "from the trust settings"
	if h.trust != "" {
		trustFrom = "trust " + h.trust + " in the hosts file"
	}
	fmt.Fprintf(w, "%-36s # %s\n", "trust "+o.trustMode(), trustFrom)
	fs.VisitAll(func(f *pflag.Flag) {
		if notHostKey(f.Name) {
			return
		}
		var vals []string
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			vals = sv.GetSlice()
		} else {
			vals = []string{f.Value.String()}
		}
		if len(vals) == 0 {
			vals = []string{""}
		}
		for _, v := range vals {
			fmt.Fprintf(w, "%-36s # %s\n", f.Name+" "+hosts.Quote(v), h.origins[f.Name])
		}
	})
	return nil
}
