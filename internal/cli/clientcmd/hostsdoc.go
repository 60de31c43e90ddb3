package clientcmd

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// HostsFileDoc returns the sc-client-hosts(5) man page in the markdown
// go-md2man renders, its list of keys made from sc-client's flags, so
// that a new flag is documented as a key without a word here.
func HostsFileDoc() string {
	var keys strings.Builder
	fmt.Fprintf(&keys, "**trust** (tofu, pin, ca, ca+pin or insecure)\n: how the server is trusted; the trust keys another mode does not use are ignored for the host. Without it, the mode follows from the keys given: ca, pin, both, insecure, else trust on first use.\n\n")
	o := &options{}
	fs := pflag.NewFlagSet("sc-client", pflag.ContinueOnError)
	o.addFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if notHostKey(f.Name) {
			return
		}
		fmt.Fprintf(&keys, "**%s**\n: %s\n\n", f.Name, strings.NewReplacer("*", `\*`, "_", `\_`, "`", "").Replace(f.Usage))
	})
	return `# NAME

sc-client-hosts - per-host settings of sc-client

# SYNOPSIS

**~/.config/space-captain/hosts**

# DESCRIPTION

sc-client reads per-host settings from the hosts file: the one
**--hosts-file** names, else the one **SC_CLIENT_HOSTS_FILE** names, else
space-captain/hosts in the user's configuration directory
($XDG\_CONFIG\_HOME or ~/.config on Linux, ~/Library/Application Support on
macOS, %AppData% on Windows), beside the known_hosts file. A missing
default file is no error; **--hosts-file ''** reads none.

The layout is ssh_config(5)'s: a **Host** line with one or more patterns
opens a block, and the lines under it are **key value** (or key=value)
settings. Keys and Host are case-insensitive; a value may be put in
double quotes. Lines starting with # are comments. Settings before the
first Host line apply to every host.

    # the game server: sc-client echo hi --host game
    Host game
        server game.example:4242
        pin sha256//PN5c5d1wBtw5Kb6aNSzB/G8y4wXvKbmBDDi7RK1F0lM=
        pin sha256//Bterp39tseurdiFK7zkMl2GHPwh++bv+Z2LuUf9z0Ss=
        # the player key this server knows you by (sc-server --client-auth)
        identity ~/.config/space-captain/game.key

    Host *.test !prod.test
        ca ~/test-ca.crt
        timeout 3s

    Host *
        tofu off

# MATCHING

The name matched is **--host NAME**, else the host of **--server**. In a
pattern * matches any run of characters and ? one character; a pattern
starting with ! excludes the names it matches. A block applies when one of
its patterns matches and none of its ! patterns does.

For each key the first block that applies and sets it wins, as in
ssh_config: put specific blocks first and Host * last. A key given several
times in that block (pin) takes all its values; a key that takes one value
may be given once per block. With --host NAME and no server key, the
server is NAME:4242.

# PRECEDENCE

Flags on the command line win over the file, key by key; any trust flag on
the command line (--ca, --pin, --insecure, --known-hosts, --tofu) replaces
all of the file's trust settings for that run. **sc-client config show
HOST** prints the effective settings for HOST and where each came from.

Pins given here (or with --pin) are what the operator gives: they put
sc-client in pin mode for the host, and the known_hosts file, which is
what trust on first use learns, is not consulted for it. **sc-cert pin add
--to hosts HOST:PORT PIN** writes pins into the block "Host HOST" (adding
it, with a server line, when there is none).

**identity FILE** is the player key (and FILE.crt beside it, when there is
one) presented to a server that asks for a client certificate, as ssh's
IdentityFile; **identity none** presents nothing. Without it, the default
identity (**sc-client identity new**) is presented when it exists.

An unknown key or a bad value is an error naming the file and line; every
block's keys are checked, not only the matching ones.

# KEYS

Every key is one of sc-client's flags by its name (without the dashes),
except host, hosts-file and json, plus **trust**. Values are written as on
the command line; a leading ~/ in a value is the home directory.

` + keys.String() + `# SEE ALSO

**sc-client**(1), **sc-cert-pin-add**(1), **sc-server.toml**(5), **ssh_config**(5)
`
}
