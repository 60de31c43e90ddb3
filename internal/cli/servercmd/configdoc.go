package servercmd

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// ConfigFileDoc returns the sc-server.toml(5) man page in the markdown
// go-md2man renders, its list of keys made from the flags themselves, so
// that a new flag is documented as a key without a word here.
func ConfigFileDoc() string {
	var keys strings.Builder
	NewRootCmd(Env{}).Flags().VisitAll(func(f *pflag.Flag) {
		if commandLineOnly(f.Name) {
			return
		}
		def := f.DefValue
		if def == "" || def == "[]" {
			def = "none"
		}
		fmt.Fprintf(&keys, "**%s** (%s; default %s)\n: %s\n\n", f.Name, wantType(f), def, mdEscape(f.Usage))
	})
	return `# NAME

sc-server.toml - configuration file of sc-server

# SYNOPSIS

**` + DefaultConfigFile + `**

# DESCRIPTION

sc-server reads its settings from a TOML file: the one **--config** names,
else the one **` + "SC_SERVER_CONFIG" + `** names, else ` + DefaultConfigFile + `
when it exists (the .deb and .rpm packages install it, and keep it on
upgrade once edited). **--config ''** (or SC_SERVER_CONFIG set empty) reads
no file.

Every key is one of sc-server's flags, by its name without the dashes, at
the top level of the file (no sections), with the TOML type that fits:
true or false for a switch, a number for a number, a string for the rest
(durations too, e.g. "10s"), and a string or a list of strings for a flag
that takes several values:

    listen = ":4242"
    cert = "/var/lib/sc-server/server.crt"
    key = "/var/lib/sc-server/server.key"
    max-conns = 10000
    shutdown-timeout = "10s"
    proxy-protocol-from = ["10.0.1.0/28", "192.0.2.7"]
    auto-renew = true

An unknown key, a value of the wrong type or one the flag refuses, and two
settings that exclude each other are errors that name the file and the
line; sc-server then does not start (exit code 2).

# PRECEDENCE

A flag on the command line wins over an environment variable, which wins
over the file, which wins over the default. The variables are SC\_SERVER\_
and a flag's name in capitals with _ for -, e.g. **SC_SERVER_MAX_CONNS**
for **max-conns**: systemd's Environment= sets them without editing the
file. An SC\_SERVER\_ variable that names no setting is an error.

**sc-server --print-config** prints the effective settings as a
configuration file, each line followed by where its value came from: the
command line, the environment variable, the file and line, or the default.
**sc-server --check** validates the file together with the certificate and
keys it names, and says which file it read.

# RELOADING

SIGHUP (systemctl reload sc-server) reads the file again. The log level
and the paths of the certificate, key, next key and ticket-key file apply
at once (new certificate files are loaded and checked before they replace
the ones being served; files that cannot be used leave the old ones
serving, with a warning). So do the client lists' paths (client-ca,
client-allow, client-revoked: the new lists are loaded before they replace
the ones in force, and a revocation in them cuts live sessions) and
revoke-live; client-auth itself needs a restart. SIGHUP also re-reads the
client list files themselves, as it does the certificate. Every other setting is fixed when the server
starts: the log names the ones that changed and need a restart. A file
that no longer parses changes nothing, with a warning. Settings given on
the command line or in the environment keep winning over the file.

# KEYS

` + keys.String() + `# FILES

**` + DefaultConfigFile + `**
: the default configuration file.

# SEE ALSO

**sc-server**(1), **sc-cert**(1), **sc-client-hosts**(5)
`
}

// mdEscape keeps flag help from being read as markdown.
func mdEscape(s string) string {
	return strings.NewReplacer("*", `\*`, "_", `\_`, "`", "").Replace(s)
}
