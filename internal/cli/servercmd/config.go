package servercmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// DefaultConfigFile is the configuration file sc-server reads when it
// exists and neither --config nor SC_SERVER_CONFIG names another. The
// packages install it.
const DefaultConfigFile = "/etc/space-captain/sc-server.toml"

// EnvPrefix starts the environment variables that set sc-server's flags:
// SC_SERVER_ and the flag's name in upper case with _ for -, e.g.
// SC_SERVER_MAX_CONNS for --max-conns. SC_SERVER_CONFIG names the
// configuration file (empty: none).
const EnvPrefix = "SC_SERVER_"

// commandLineOnly reports whether a flag is not a setting: it asks the
// command to do something (--check, --print-config) or names the file
// itself, so neither the file nor the environment sets it.
func commandLineOnly(name string) bool {
	switch name {
	case "config", "print-config", "check", "help", "version":
		return true
	}
	return false
}

// reloadable reports whether a setting changed in the configuration file
// takes effect on SIGHUP; every other one is fixed when the server starts.
func reloadable(name string) bool {
	switch name {
	case "cert", "key", "next-key", "ticket-keys", "log-level", "client-ca", "client-allow", "client-revoked", "revoke-live":
		return true
	}
	return false
}

// sourceKind says where a setting's value came from, lowest precedence
// first.
type sourceKind int

const (
	fromDefault sourceKind = iota
	fromFile
	fromEnv
	fromFlag
)

// origin is where one setting's value came from.
type origin struct {
	kind  sourceKind
	where string // FILE:LINE, or the environment variable
}

func (o origin) String() string {
	switch o.kind {
	case fromFlag:
		return "command line"
	case fromEnv:
		return "environment " + o.where
	case fromFile:
		return o.where
	}
	return "default"
}

// fileSetting is one key = value line of a configuration file.
type fileSetting struct {
	key   string
	line  int
	value any // as go-toml decodes it: string, int64, float64, bool, []any, ...
}

// configFile is a parsed configuration file, its settings in file order.
type configFile struct {
	path     string
	settings []fileSetting
}

func (c *configFile) lookup(key string) (fileSetting, bool) {
	for _, s := range c.settings {
		if s.key == key {
			return s, true
		}
	}
	return fileSetting{}, false
}

// settings is sc-server's configuration as it was put together at start:
// which file was read, where each flag's value came from and what it was,
// so that --print-config can show it and SIGHUP can tell what changed.
type settings struct {
	file     string // the configuration file read; "" for none
	fileFrom string // how it was chosen: "--config", "SC_SERVER_CONFIG" or "default path"
	origins  map[string]origin
	values   map[string]string // each setting's value before validation
	env      map[string]string // the SC_SERVER_* variables at start
	// newFlags makes a fresh flag set with sc-server's flags at their
	// defaults, to read the file into again on SIGHUP.
	newFlags func() *pflag.FlagSet
}

// describe says which configuration file is in use, for --check and
// --print-config.
func (s *settings) describe() string {
	if s == nil || s.file == "" {
		return "none"
	}
	return s.file + " (" + s.fileFrom + ")"
}

// configFlags adds --config and --print-config to fs.
func configFlags(fs *pflag.FlagSet) {
	fs.String("config", DefaultConfigFile, "configuration `FILE` (TOML): every flag's setting by its name, e.g. max-conns = 10000; flags override $"+EnvPrefix+"* variables, which override the file; '' reads none, and the default is read only when it exists")
	fs.Bool("print-config", false, "print the effective settings as a configuration file, each with where it came from (command line, environment, file and line, or default), and exit")
}

// loadSettings applies the environment and the configuration file to the
// flags the command line did not set, and records where each value came
// from. An unknown key, an unknown SC_SERVER_* variable or a bad value is
// a usage error naming the file and line, or the variable.
func loadSettings(cmd *cobra.Command, env *Env, newFlags func() *pflag.FlagSet) (*settings, error) {
	fs := cmd.Flags()
	s := &settings{origins: map[string]origin{}, values: map[string]string{}, env: map[string]string{}, newFlags: newFlags}
	environ := os.Environ
	if env.Environ != nil {
		environ = env.Environ
	}
	for _, kv := range environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, EnvPrefix) {
			s.env[k] = v
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.env)) {
		if k == cli.ServerConfigEnv {
			continue
		}
		if f := fs.Lookup(envFlagName(k)); f == nil || commandLineOnly(f.Name) {
			return nil, cli.WithHint(cli.Usagef("environment variable %s: sc-server has no setting --%s", k, envFlagName(k)),
				"the variables are "+EnvPrefix+" and a flag's name in capitals with _ for -, e.g. "+EnvPrefix+"MAX_CONNS; unset this one")
		}
	}

	path, explicit := "", true
	switch {
	case fs.Changed("config"):
		path, s.fileFrom = fs.Lookup("config").Value.String(), "--config"
	case hasKey(s.env, cli.ServerConfigEnv):
		path, s.fileFrom = s.env[cli.ServerConfigEnv], cli.ServerConfigEnv
	default:
		path, s.fileFrom, explicit = DefaultConfigFile, "default path", false
	}
	var file *configFile
	if path != "" {
		var err error
		file, err = readConfigFile(path, explicit)
		if err != nil {
			return nil, err
		}
	}
	if file != nil {
		s.file = file.path
		for _, st := range file.settings {
			if f := fs.Lookup(st.key); f == nil || commandLineOnly(st.key) {
				return nil, unknownKey(file.path, st)
			}
		}
	}

	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || commandLineOnly(f.Name) {
			return
		}
		envName := EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		switch v, inEnv := s.env[envName]; {
		case f.Changed:
			s.origins[f.Name] = origin{kind: fromFlag}
		case inEnv:
			if e := f.Value.Set(v); e != nil {
				err = cli.Usagef("environment variable %s=%q: %v", envName, v, e)
				return
			}
			s.origins[f.Name] = origin{kind: fromEnv, where: envName}
		default:
			if file == nil {
				s.origins[f.Name] = origin{kind: fromDefault}
				return
			}
			st, ok := file.lookup(f.Name)
			if !ok {
				s.origins[f.Name] = origin{kind: fromDefault}
				return
			}
			if e := setFromFile(f, st.value); e != nil {
				err = cli.Usagef("%s:%d: %s: %v", file.path, st.line, f.Name, e)
				return
			}
			s.origins[f.Name] = origin{kind: fromFile, where: fmt.Sprintf("%s:%d", file.path, st.line)}
		}
	})
	if err != nil {
		return nil, err
	}
	if err := s.checkExclusive(fs); err != nil {
		return nil, err
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if !commandLineOnly(f.Name) {
			s.values[f.Name] = f.Value.String()
		}
	})
	return s, nil
}

// readConfigFile reads and parses a configuration file. The default path
// missing is no error (nil, nil); a file named on purpose must exist.
func readConfigFile(path string, explicit bool) (*configFile, error) {
	_, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return nil, nil
	}
	if err != nil {
		return nil, cli.WithHint(fmt.Errorf("reading the configuration file: %w", err),
			"name another with --config FILE, or none with --config ''")
	}
	// The file names the files the server trusts: it goes through the
	// hardened reader, which also refuses one another user could write.
	data, _, err := trustfile.Read(path, trustfile.ServerConfig)
	if err != nil {
		return nil, fmt.Errorf("reading the configuration file %s: %w", path, err)
	}
	return parseConfig(path, data)
}

// parseConfig parses a configuration file: TOML, top-level keys only. The
// values come from go-toml's decoder, which checks the whole syntax
// (duplicate keys included); the line of each key comes from its parser.
func parseConfig(path string, data []byte) (*configFile, error) {
	var values map[string]any
	if err := toml.Unmarshal(data, &values); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return nil, cli.Usagef("%s:%d:%d: %s", path, row, col, strings.TrimPrefix(de.Error(), "toml: "))
		}
		return nil, cli.Usagef("%s: %v", path, err)
	}
	c := &configFile{path: path}
	var p unstable.Parser
	p.Reset(data)
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind != unstable.KeyValue && e.Kind != unstable.Table && e.Kind != unstable.ArrayTable {
			continue
		}
		var parts []string
		line := 0
		for it := e.Key(); it.Next(); {
			if line == 0 {
				line = p.Shape(it.Node().Raw).Start.Line
			}
			parts = append(parts, string(it.Node().Data))
		}
		key := strings.Join(parts, ".")
		switch {
		case e.Kind != unstable.KeyValue:
			return nil, cli.WithHint(cli.Usagef("%s:%d: [%s]: the file has no sections", path, line, key),
				"every setting is a top-level key = value line, named after a flag: listen = \":4242\"")
		case len(parts) > 1:
			return nil, cli.WithHint(cli.Usagef("%s:%d: unknown key %q", path, line, key),
				"every setting is a top-level key named after a flag, e.g. max-conns = 10000")
		}
		c.settings = append(c.settings, fileSetting{key: key, line: line, value: values[key]})
	}
	if err := p.Error(); err != nil {
		return nil, cli.Usagef("%s: %v", path, err)
	}
	return c, nil
}

// unknownKey is the error for a key that is no setting, with the nearest
// one when it looks like a typo.
func unknownKey(path string, st fileSetting) error {
	if commandLineOnly(st.key) {
		return cli.WithHint(cli.Usagef("%s:%d: %s is not a setting", path, st.line, st.key),
			"--"+st.key+" is given on the command line only")
	}
	return cli.WithHint(cli.Usagef("%s:%d: unknown key %q", path, st.line, st.key),
		"the keys are sc-server's flag names without the dashes in front (sc-server --help; man sc-server.toml)")
}

// setFromFile sets a flag from a TOML value, requiring the TOML type that
// matches the flag: true/false for a switch, a number for a number, a
// string for the rest, and an array of strings for a flag that takes
// several values.
func setFromFile(f *pflag.Flag, v any) error {
	typ := f.Value.Type()
	switch x := v.(type) {
	case bool:
		if typ != "bool" {
			return fmt.Errorf("want %s, not true or false", wantType(f))
		}
		return f.Value.Set(strconv.FormatBool(x))
	case int64:
		if !isNumber(typ) {
			return fmt.Errorf("want %s, not a number", wantType(f))
		}
		return f.Value.Set(strconv.FormatInt(x, 10))
	case float64:
		if !strings.HasPrefix(typ, "float") {
			return fmt.Errorf("want %s, not %v", wantType(f), x)
		}
		return f.Value.Set(strconv.FormatFloat(x, 'g', -1, 64))
	case string:
		if typ == "bool" || isNumber(typ) {
			return fmt.Errorf("want %s, not a string (write it without quotes)", wantType(f))
		}
		return f.Value.Set(x)
	case []any:
		items := make([]string, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("want a list of strings, e.g. [\"a\", \"b\"]")
			}
			items[i] = s
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			return sv.Replace(items)
		}
		if !isList(f) {
			return fmt.Errorf("want %s, not a list", wantType(f))
		}
		return f.Value.Set(strings.Join(items, ","))
	}
	return fmt.Errorf("want %s", wantType(f))
}

func isNumber(typ string) bool {
	return strings.HasPrefix(typ, "int") || strings.HasPrefix(typ, "uint") || strings.HasPrefix(typ, "float")
}

// isList reports whether a flag takes a comma-separated list, as its help
// says.
func isList(f *pflag.Flag) bool {
	_, ok := f.Value.(pflag.SliceValue)
	return ok || strings.Contains(f.Usage, "comma-separated")
}

// wantType says what TOML value a flag takes.
func wantType(f *pflag.Flag) string {
	typ := f.Value.Type()
	switch {
	case typ == "bool":
		return "true or false"
	case isNumber(typ):
		return "a number"
	case typ == "duration":
		return `a duration in quotes, e.g. "10s"`
	case isList(f):
		return `a string or a list of strings, e.g. ["a", "b"]`
	}
	return `a string in quotes`
}

// exclusiveAnnotation is where cobra keeps MarkFlagsMutuallyExclusive's
// groups on each flag.
const exclusiveAnnotation = "cobra_annotation_mutually_exclusive"

// checkExclusive applies the flags' mutually exclusive groups to values
// from the environment and the file, which cobra (checking the command
// line only) does not see. A value equal to the default counts as unset.
func (s *settings) checkExclusive(fs *pflag.FlagSet) error {
	seen := map[string]bool{}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		for _, group := range f.Annotations[exclusiveAnnotation] {
			if err != nil || seen[group] {
				continue
			}
			seen[group] = true
			var set []string
			fromCommandLine := 0
			for _, name := range strings.Split(group, " ") {
				g := fs.Lookup(name)
				o := s.origins[name]
				if g == nil || o.kind == fromDefault || g.Value.String() == g.DefValue {
					continue
				}
				if o.kind == fromFlag {
					fromCommandLine++
				}
				set = append(set, fmt.Sprintf("%s (%s)", name, o))
			}
			if len(set) > 1 && fromCommandLine < len(set) {
				err = cli.Usagef("these settings can't be used together: %s", strings.Join(set, ", "))
			}
		}
	})
	return err
}

// flagInError finds the flag a validation error names ("--listen ...").
var flagInError = regexp.MustCompile(`^--([a-z0-9-]+)\b`)

// annotate prefixes a validation error about a flag with where its value
// came from, when that is not the command line: the file and line, or the
// environment variable.
func (s *settings) annotate(err error) error {
	if s == nil || err == nil {
		return err
	}
	m := flagInError.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	o, ok := s.origins[m[1]]
	if !ok || o.kind == fromFlag || o.kind == fromDefault {
		return err
	}
	return cli.WithCode(cli.ExitCode(err), fmt.Errorf("%s: %w", o, err))
}

// print writes the effective settings as a configuration file: each line
// a key = value that the file takes, then where it came from.
func (s *settings) print(w io.Writer, fs *pflag.FlagSet) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# sc-server's effective settings, each followed by where it came from:\n")
	fmt.Fprintf(&b, "# the command line, an %s* environment variable, the configuration\n", EnvPrefix)
	fmt.Fprintf(&b, "# file (FILE:LINE) or the default. Configuration file: %s\n", s.describe())
	fs.VisitAll(func(f *pflag.Flag) {
		if commandLineOnly(f.Name) {
			return
		}
		// A key URI's PIN (pin-value) is never printed.
		line := f.Name + " = " + tomlValue(f, pki.RedactKeyURI(s.values[f.Name]))
		fmt.Fprintf(&b, "%-44s # %s\n", line, s.origins[f.Name])
	})
	_, err := w.Write(b.Bytes())
	return err
}

// tomlValue renders a flag's value (as its String method gave it) as the
// TOML value the file would take.
func tomlValue(f *pflag.Flag, v string) string {
	typ := f.Value.Type()
	if typ == "bool" || isNumber(typ) {
		return v
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		items := sv.GetSlice()
		q := make([]string, len(items))
		for i, it := range items {
			q[i] = quote(it)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	return quote(v)
}

// quote writes s as a TOML basic string; JSON's escapes are valid in one.
func quote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// envFlagName is the flag an SC_SERVER_* variable sets.
func envFlagName(v string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(v, EnvPrefix), "_", "-"))
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// reread is the outcome of reading the configuration file again on
// SIGHUP: the settings whose new value applies now, their new values, and
// the ones that changed but wait for a restart.
type reread struct {
	apply   map[string]string // setting -> new value (its String form)
	restart []string          // settings changed in the file that need a restart
}

// reread reads the configuration file again and compares it with the
// settings in force. Settings from the command line or the environment
// still win over the file, so a change to them in the file changes
// nothing. The settings that apply now are recorded as in force. An error
// leaves everything as it was.
func (s *settings) reread() (*reread, error) {
	if s.file == "" {
		return &reread{}, nil
	}
	file, err := readConfigFile(s.file, true)
	if err != nil {
		return nil, err
	}
	fs := s.newFlags()
	for _, st := range file.settings {
		if f := fs.Lookup(st.key); f == nil || commandLineOnly(st.key) {
			return nil, unknownKey(file.path, st)
		}
	}
	r := &reread{apply: map[string]string{}}
	newOrigins := map[string]origin{}
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || commandLineOnly(f.Name) {
			return
		}
		if k := s.origins[f.Name].kind; k == fromFlag || k == fromEnv {
			return
		}
		o := origin{kind: fromDefault}
		if st, ok := file.lookup(f.Name); ok {
			if e := setFromFile(f, st.value); e != nil {
				err = cli.Usagef("%s:%d: %s: %v", file.path, st.line, f.Name, e)
				return
			}
			o = origin{kind: fromFile, where: fmt.Sprintf("%s:%d", file.path, st.line)}
		}
		newOrigins[f.Name] = o
		if v := f.Value.String(); v != s.values[f.Name] {
			if reloadable(f.Name) {
				r.apply[f.Name] = v
			} else {
				r.restart = append(r.restart, f.Name)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	for name, v := range r.apply {
		s.values[name], s.origins[name] = v, newOrigins[name]
	}
	return r, nil
}
