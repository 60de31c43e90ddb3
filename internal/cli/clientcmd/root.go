package clientcmd

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/cli/benchcmd"
	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes of sc-client beyond the shared ones (0 ok, 1 error, 2 usage,
// 130 interrupted).
const (
	// ExitKeyMismatch: the server's key is not the one trusted — it changed
	// since the known-hosts file recorded it, or it is not among --pin.
	ExitKeyMismatch = cli.ExitFirstCustom + iota // 3
	// ExitUnknownHost: the server is not in the known-hosts file and
	// trust on first use is off (--tofu off) or was declined at the prompt.
	ExitUnknownHost // 4
	// ExitUntrusted: the certificate does not verify against --ca, or is
	// not for the server's name.
	ExitUntrusted // 5
	// ExitServerError: the server answered ERROR, or a wrong reply.
	ExitServerError // 6
)

// DefaultServer is where sc-client connects without --server.
const DefaultServer = "127.0.0.1:4242"

// defaultPort is added to a --server without a port.
const defaultPort = "4242"

// Env is what sc-client takes from outside besides the command's standard
// streams: whether standard input is a terminal, and the clock. The zero
// value means the real ones.
type Env struct {
	// IsTerminal reports whether standard input is a terminal: --tofu
	// defaults to prompt there and to auto elsewhere. Nil means checking
	// the command's input (a terminal only if it is an *os.File that is
	// one).
	IsTerminal func() bool
	// Now is the clock, for the known-hosts file's times. Nil means
	// time.Now.
	Now func() time.Time
}

// options are the flags every command shares.
type options struct {
	server     string        // --server HOST:PORT; default DefaultServer
	serverName string        // --server-name; default the host of --server
	nul        bool          // --nul: NUL-terminated strings like the original client
	timeout    time.Duration // --timeout: connecting, and waiting for each reply
	maxMessage int           // --max-message
	plaintext  bool
	json       bool
	ca         string   // --ca FILE
	pins       []string // --pin (repeatable)
	revoked    []string // --revoked-pin (repeatable)
	insecure   bool
	knownHosts string      // --known-hosts FILE; default pinning.DefaultStorePath
	tofu       string      // --tofu prompt|auto|off; default prompt on a terminal, else auto
	hosts      hostOptions // --host, --hosts-file, and what the hosts file set
	udp        bool        // --udp: DTLS over UDP (udp.go)
	// identityFile is --identity: the key presented when the server asks
	// for a client certificate; "" means the default identity if it
	// exists, identityNone none (identity.go).
	identityFile string
}

// streams are a command's standard streams and environment while it runs.
type streams struct {
	stdout, stderr io.Writer
	stdin          *bufio.Reader // shared by the TOFU prompt and chat
	isTerminal     bool
	env            *Env
}

// warnf prints a warning line on stderr.
func (s *streams) warnf(format string, args ...any) {
	fmt.Fprintf(s.stderr, "sc-client: warning: "+format+"\n", args...)
}

// notef prints a note line on stderr.
func (s *streams) notef(format string, args ...any) {
	fmt.Fprintf(s.stderr, "sc-client: "+format+"\n", args...)
}

func newStreams(cmd *cobra.Command, env *Env) *streams {
	in := cmd.InOrStdin()
	isTerm := env.IsTerminal
	if isTerm == nil {
		isTerm = func() bool { return cli.IsTerminal(in) }
	}
	return &streams{stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(), stdin: bufio.NewReaderSize(in, 64<<10), isTerminal: isTerm(), env: env}
}

const rootLong = `sc-client talks the Space Captain protocol to a server: echo, reverse and
time requests, the server's key pins (keys), and an interactive or random
session (chat).

How the server is trusted:
  --ca FILE        verify its certificate chain against the CA in FILE (e.g.
                   certs/ca.crt) and its name (the host of --server; IP
                   addresses are checked against the certificate's IP names)
  --pin PIN        trust a server whose key has this pin (sha256//...; can be
                   repeated: current and next key). With --ca, both must hold
  --insecure       trust any server: NOTHING is checked (tests only)
  (neither)        trust on first use, like ssh: the first connection records
                   the server's key in the known hosts file (--known-hosts);
                   later ones must present it, or a key the server announced
                   ahead of a planned rollover. --tofu prompt asks before the
                   first connection (the default on a terminal), auto records
                   and says so (the default otherwise), off refuses unknown
                   servers. A changed key is refused loudly, with the
                   command that forgets the old one if the change was planned.

Who you are: when a server asks for a client certificate (sc-server
--client-auth), sc-client presents your identity, the key sc-client identity
new made (or --identity FILE; --identity none presents nothing). The KEYS
reply then ends in the line "client PIN NAME": who the server took you for.

With --udp every command speaks DTLS 1.2 over UDP to a sc-server --dtls,
trusted the same ways; the known hosts entry of HOST:PORT is the same for
TCP and UDP. A request whose reply is lost is sent again until --timeout.

With --json every result is a JSON object on standard output — and so is
an error, besides the message on standard error — for scripts.

Exit codes:
  0    success
  1    error (cannot connect, timeout, unreadable file, ...)
  2    usage error (unknown flag, missing or conflicting arguments)
  3    the server's key is not the trusted one: it CHANGED since the known
       hosts file recorded it, or it is not among --pin
  4    unknown server not trusted: --tofu off, or declined at the prompt
  5    the certificate does not verify against --ca, or not for the name
  6    the server answered with an error, or a wrong reply
  130  interrupted`

// NewRootCmd returns the sc-client root command with all its subcommands.
func NewRootCmd(env Env) *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:   "sc-client",
		Short: "Talk the Space Captain protocol to a server",
		Long:  rootLong,
		Example: `  sc-client echo hello --ca certs/ca.crt
  sc-client reverse 'hello world' --pin 'sha256//...'
  sc-client time --server game.example:4242      # trust on first use
  sc-client keys --json
  sc-client echo hello --udp --pin 'sha256//...'   # DTLS to sc-server --dtls
  sc-client chat --random --count 100 --ca certs/ca.crt
  sc-client identity new                          # your player key; its pin goes to the operator
  sc-client echo hi --identity alice.key --ca certs/ca.crt   # a server with --client-auth`,
	}
	cli.SetupRoot(root)
	for _, c := range []*cobra.Command{
		newTextCmd(o, &env, proto.Echo, "echo", "Send TEXT and print the server's echo of it"),
		newTextCmd(o, &env, proto.Reverse, "reverse", "Send TEXT and print it reversed by the server"),
		newTimeCmd(o, &env),
		newKeysCmd(o, &env),
		newChatCmd(o, &env),
	} {
		o.addFlags(c.Flags())
		o.addHostFlags(c.Flags())
		cli.CompleteValues(c, "tofu", "prompt", "auto", "off")
		root.AddCommand(c)
	}
	root.AddCommand(newConfigCmd(o, &env))
	root.AddCommand(newIdentityCmd(&env))
	// bench has its own --server and trust flags, and no trust on first
	// use: a load test should not write the known hosts file.
	root.AddCommand(benchcmd.NewCmd())
	return root
}

// addFlags adds the flags every protocol command shares to fs. They are
// each command's own rather than the root's persistent flags, so that
// bench, which has its own, does not list them.
func (o *options) addFlags(fs *pflag.FlagSet) {
	defStore, err := pinning.DefaultStorePath()
	if err != nil {
		defStore = "space-captain/known_hosts in the user's configuration directory"
	}
	fs.SortFlags = false
	fs.StringVar(&o.server, "server", DefaultServer, "server `HOST:PORT` (port 4242 if omitted)")
	fs.StringVar(&o.ca, "ca", "", "trust servers whose chain verifies against the CA certificate(s) in `FILE`, e.g. certs/ca.crt")
	fs.StringArrayVar(&o.pins, "pin", nil, "trust a server whose key has this `PIN` (sha256//BASE64 or hex; can be repeated; with --ca both must hold)")
	fs.StringArrayVar(&o.revoked, "revoked-pin", nil, "never trust a server whose key has this `PIN`, in any mode but --insecure (a stolen key; can be repeated; a --pin that is also revoked is an error)")
	fs.StringVar(&o.knownHosts, "known-hosts", "", "known hosts `FILE` for trust on first use (default "+defStore+")")
	fs.StringVar(&o.tofu, "tofu", "", "what trust on first use does with an unknown server, `MODE` prompt, auto or off (default prompt on a terminal, else auto)")
	fs.BoolVar(&o.insecure, "insecure", false, "trust ANY server, checking nothing (tests only)")
	fs.StringVar(&o.serverName, "server-name", "", "`NAME` to send as SNI and, with --ca, to check the certificate for (default the host of --server)")
	fs.StringVar(&o.identityFile, "identity", "", "present the key in `FILE` (and FILE.crt, or for FILE.key FILE.crt, when it exists) when the server asks for a client certificate; none presents nothing (default: the default identity, when it exists: sc-client identity)")
	fs.BoolVar(&o.plaintext, "plaintext", false, "talk WITHOUT TLS, to a sc-server --plaintext (comparison runs only)")
	cli.DurationVar(fs, &o.timeout, "timeout", client.DefaultTimeout, "longest wait to connect (TCP and TLS handshake), and for each reply")
	fs.BoolVar(&o.nul, "nul", false, "send NUL-terminated strings, as the original C client does (the NUL is not printed)")
	fs.IntVar(&o.maxMessage, "max-message", proto.DefaultMaxBody, "largest request or reply body, in `BYTES` (the server's --max-message)")
	fs.BoolVar(&o.json, "json", false, "print results, and errors, as JSON on standard output")
	o.addUDPFlags(fs)
}

// validate checks the cross-flag rules, naming the flags.
func (o *options) validate() error {
	addr, err := normalizeServer(o.server)
	if err != nil {
		return cli.Usagef("--server %q: %v", o.server, err)
	}
	o.server = addr
	if err := o.validateUDP(); err != nil {
		return err
	}
	trustFlags := []struct {
		name string
		set  bool
	}{
		{"--ca", o.ca != ""},
		{"--pin", len(o.pins) > 0},
		{"--insecure", o.insecure},
		{"--known-hosts", o.knownHosts != ""},
		{"--tofu", o.tofu != ""},
		{"--server-name", o.serverName != ""},
		{"--revoked-pin", len(o.revoked) > 0},
	}
	if o.plaintext {
		for _, f := range trustFlags {
			if f.set {
				return cli.Usagef("%s can't be used with --plaintext: a plaintext connection has no certificate to check", f.name)
			}
		}
	}
	if o.insecure && len(o.revoked) > 0 {
		return cli.Usagef("--revoked-pin can't be used with --insecure, which checks nothing")
	}
	if o.insecure {
		for _, f := range trustFlags[:5] {
			if f.set && f.name != "--insecure" {
				return cli.Usagef("%s can't be used with --insecure, which checks nothing", f.name)
			}
		}
	}
	if o.ca != "" || len(o.pins) > 0 {
		for _, f := range trustFlags[3:5] {
			if f.set {
				with := "--ca"
				if len(o.pins) > 0 {
					with = "--pin"
				}
				return cli.Usagef("%s can't be used with %s: it is for trust on first use, which --ca and --pin replace", f.name, with)
			}
		}
	}
	switch o.tofu {
	case "", "prompt", "auto", "off":
	default:
		return cli.Usagef("--tofu %q: want prompt, auto or off", o.tofu)
	}
	if o.timeout <= 0 {
		return cli.Usagef("--timeout %v: want a positive duration, e.g. 10s", o.timeout)
	}
	if o.maxMessage < 1 || o.maxMessage > 16<<20 {
		return cli.Usagef("--max-message %d: want 1 to %d bytes", o.maxMessage, 16<<20)
	}
	return nil
}

// normalizeServer checks a --server value and adds the default port to a
// bare host.
func normalizeServer(s string) (string, error) {
	s = strings.TrimSpace(s)
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// A bare host name or IP address (IPv6 with or without brackets).
		bare := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		if bare == "" || strings.ContainsAny(bare, " /") || (strings.Contains(bare, ":") && net.ParseIP(bare) == nil) {
			return "", fmt.Errorf("want HOST:PORT, e.g. 127.0.0.1:4242")
		}
		return net.JoinHostPort(bare, defaultPort), nil
	}
	if host == "" {
		return "", fmt.Errorf("no host: want HOST:PORT, e.g. 127.0.0.1:4242")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("port %q: want 1 to 65535", port)
	}
	return s, nil
}
