package servercmd

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Defaults of the flags that are not the server core's.
const (
	DefaultListen          = ":4242"
	DefaultShutdownTimeout = 10 * time.Second
)

// Env is what sc-server takes from outside: the environment, the terminal,
// the clock, signals and a hook for tests. The zero value means the real
// ones.
type Env struct {
	// Getenv reads environment variables (SC_KEY_PASSWORD). Nil means
	// os.Getenv.
	Getenv func(string) string
	// Stdin is where a passphrase prompt reads from, only when it is a
	// terminal. Nil means os.Stdin.
	Stdin *os.File
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Reload delivers requests to reload the certificate. Nil means
	// SIGHUP.
	Reload <-chan os.Signal
	// Reloaded, when set, is called after each reload that Reload asked
	// for has run (tests wait on it: reloads run apart from the signal
	// loop, and several requests may make one reload).
	Reloaded func()
	// Listening, when set, is called with the bound address once the
	// server listens (tests listen on port 0).
	Listening func(net.Addr)
	// Environ lists the environment, for the SC_SERVER_* variables that
	// set flags and SC_SERVER_CONFIG, the configuration file. Nil means
	// os.Environ.
	Environ func() []string
	// DTLSListening, when set, is called with the bound UDP address of
	// --dtls-listen once DTLS is served.
	DTLSListening func(net.Addr)
	// MetricsListening, when set, is called with the bound address of
	// --metrics-listen once it serves, before the certificates are loaded
	// and before the game port is bound: /readyz answers 503 until then.
	MetricsListening func(net.Addr)

	// listenTCP binds the TCP game port. Nil means net.Listen; tests
	// replace it to hand out a port whose UDP twin is taken.
	listenTCP func(network, address string) (net.Listener, error)
}

// options are sc-server's flags. Each maps to a field here or in srv, the
// server core's options, whose documentation is the reference.
type options struct {
	// listen is the TCP address to listen on. Default DefaultListen.
	listen string
	// cert and key are the certificate (chain) and key files. Default
	// certs/server.crt and certs/server.key; both missing means the
	// default layout is made there.
	cert, key string
	// nextKey is the pre-made next key, whose pin KEYS announces. Default
	// pki.NextKeyPath(key), e.g. certs/server.next.key.
	nextKey string
	// revokedKeys is the file of revoked server-key pins that KEYS
	// announces. Default: revoked.pins beside the certificate.
	revokedKeys string
	// nextPub is the public half of a next key kept offline
	// (server.next.pub), whose pin KEYS announces. Default: beside the
	// next key, with .pub.
	nextPub string
	// nextPins are next pins given as such (--next-pin), announced too.
	nextPins []string
	// keyState is the guard's state file (--key-state). Default:
	// key-state.json beside the certificate.
	keyState string
	// keyChange is what the guard does with an unannounced key change:
	// warn (serve it, with an ERROR) or refuse (keep the old pair).
	keyChange string
	// caKey is the CA key self-renewal signs with: a file or a key in a
	// PKCS#11 token. Default "": ca.key (or ca.uri) beside cert.
	caKey string
	// tokenPIN reads the PIN of PKCS#11 tokens whose key URIs give none:
	// --token-pin-file, else SC_TOKEN_PIN.
	tokenPIN *cli.TokenPIN
	// tokens opens the keys kept in PKCS#11 tokens; run makes it and
	// closes it when the server stops.
	tokens *pki.Tokens
	// ticketKeys is a session-ticket key file shared by instances behind
	// one load balancer. Default "": keys made in memory, rotated every
	// ticketKeyRotation.
	ticketKeys string
	// ticketKeyRotation is how often in-memory ticket keys are replaced,
	// and how long a key that left the ticket-key file (or stopped
	// encrypting) still decrypts tickets. Default
	// pki.DefaultTicketKeyRotation.
	ticketKeyRotation time.Duration
	// autoRenew renews the certificate on its own key two thirds into its
	// lifetime, when the issuing key is at hand. Default true.
	autoRenew bool
	// pass reads the passphrase of encrypted keys: --key-password-file,
	// else SC_KEY_PASSWORD, else a terminal prompt.
	pass *cli.Passphrase
	// plaintext serves without TLS, for comparison runs. Default false.
	plaintext bool
	// minTLS is the lowest TLS version accepted. Default TLS 1.2.
	minTLS uint16
	// groups are the key-exchange groups, in order of preference. Default
	// nil: crypto/tls's (X25519MLKEM768, X25519, P-256, ...).
	groups []tls.CurveID
	// shutdownTimeout bounds the graceful drain after SIGINT/SIGTERM.
	// Default DefaultShutdownTimeout.
	shutdownTimeout time.Duration
	// logFormat is "text" or "json"; logLevel the lowest level logged.
	// Default text and info.
	logFormat string
	logLevel  slog.Level
	// metricsListen is the address of the metrics and health listener
	// (/metrics, /healthz, /readyz). Default "": none.
	metricsListen string
	// check validates the flags and the files, reports, and exits
	// without listening or making anything. Default false.
	check bool
	// json prints --check's result as JSON. Default false.
	json bool
	// settings are where the values above came from: the command line,
	// SC_SERVER_* variables, the configuration file, defaults.
	settings *settings
	// dtls holds the DTLS flags (dtls.go).
	dtls dtlsOptions
	// clients holds the client authentication flags (clients.go).
	clients clientOptions
	// srv holds MaxConns, the per-source limits (0 on the command line
	// means off: validate turns it into the negative value that means off
	// in server.Options), MaxMessage, the timeouts and Engine.
	srv server.Options
}

const rootLong = `sc-server serves the Space Captain protocol (ECHO, REVERSE, TIME, KEYS) over
TLS on port 4242.

With no flags it serves certs/server.crt with the key certs/server.key. When
both are missing it first makes the default layout there (as sc-cert init: a
local CA, the server certificate, its key and the next key, P-256) and prints
the pin clients should use and the sc-client command to connect with.

TLS 1.3 is preferred; TLS 1.2 is accepted with ECDHE and AEAD cipher suites
only (--min-tls 1.3 refuses it). KEYS answers with the pin of the served key
and, when the next key file exists, the next key's pin, so that clients that
trust on first use learn the next key before the rollover.

SIGINT or SIGTERM stops the server gracefully: it stops accepting, answers
every request already read, closes each connection with close_notify, and
exits 0 within --shutdown-timeout (connections still open then are cut).
The certificate, key and next key files are watched: a rotation (sc-cert
rotate, mv, an editor, a Kubernetes secret update) is served at once, without
a restart and without a failed handshake; files that cannot be used (a key
that does not match, an expired certificate) leave the old pair serving, and
the log says why (a warning). SIGHUP reloads them, and the ticket keys, at
once. The server renews its own certificate on the same key (clients' pins
stay valid) two thirds into its lifetime when it can read the issuing key
(--auto-renew); when it cannot, or with --auto-renew=false, it warns 30 and
7 days before the certificate expires, and at expiry.

--metrics-listen ADDRESS serves Prometheus metrics on /metrics, and the
probes /healthz (200 while the process runs) and /readyz (200 while the
server accepts connections with a usable certificate; 503 while it starts
and while it drains) on a listener of their own, never on the game port.

Per client address (an IPv6 /64 counts as one address) the server holds at
most --source-max-conns connections and accepts at most
--source-handshake-rate new ones a second; more are refused before any TLS
work, so that one host cannot take every core with handshakes. 0 turns
either off: for load tests from one machine, and behind a load balancer
that does not send the PROXY protocol.

--proxy-protocol-from CIDR trusts PROXY protocol headers (v1 and v2, e.g.
HAProxy's send-proxy-v2) from those load balancers, and requires one on
every connection from them: the client address in it is what the logs
(remote_addr; proxy_addr is the balancer) and the per-source limits see.
Headers from other addresses are never honoured.

--dtls also serves the protocol over DTLS 1.2 on UDP, on --dtls-listen
(default: the --listen address, on UDP), with the same certificate, keys,
pins, KEYS announcements, reloads and renewal as TCP, and the same
per-source limits, --max-message and --handshake-timeout. Clients prove
their address with DTLS's cookie exchange before the server does any
public-key work; a session with no datagram for --dtls-idle-timeout (30s)
is closed. Connection IDs keep a player's session through a NAT rebinding.

--check loads and checks everything the server would serve with — the
flags, the certificate and key (a pair, valid now, the key private to its
owner, a usable size), the next key and the ticket-key file — prints what
it found and exits, without listening and without making anything: a
missing certificate is an error here, not a first run. Use it in deploy
scripts and as systemd's ExecStartPre.

Passphrases of encrypted keys come from --key-password-file FILE, else the
SC_KEY_PASSWORD environment variable, else a prompt when standard input is a
terminal.

Keys may be kept in a PKCS#11 token (an HSM, a YubiKey, SoftHSM2; sc-cert
init --kms): --key, --next-key and --ca-key then take a pkcs11: URI, or a
.uri file holding one, and certs/server.uri, server.next.uri and ca.uri are
found where the key files would be. The private keys never leave the token;
the certificate files still reload as they change, and a certificate whose
key is not the token's is refused (the old pair keeps serving). The token's
PIN comes from pin-source=FILE in the URI, else --token-pin-file FILE, else
the SC_TOKEN_PIN environment variable; a pin-value in a URI works but is
warned about and redacted from every log line. When the token stops signing,
the handshakes that need it fail (counted as key_unavailable), the log says
so at most every 10 seconds, and the server keeps running.

Logs go to standard error, text or JSON (--log-format), with stable keys:
lifecycle at info, a refused reload or an approaching expiry at warn,
what an operator must act on at error, every connection at debug.

Exit codes:
  0    stopped by SIGINT or SIGTERM after a graceful drain (or cut at --shutdown-timeout);
       --check: everything is usable
  1    error (certificate or key missing or invalid, address in use, ...);
       --check: what is wrong
  2    usage error (unknown flag, bad value, conflicting flags)
  130  interrupted before the server started (e.g. at the passphrase prompt)`

// NewRootCmd returns the sc-server command.
func NewRootCmd(env Env) *cobra.Command {
	o := &options{pass: &cli.Passphrase{Getenv: env.Getenv, Stdin: env.Stdin}, tokenPIN: &cli.TokenPIN{Getenv: env.Getenv}, minTLS: tls.VersionTLS12}
	cmd := &cobra.Command{
		Use:   "sc-server [flags]",
		Short: "Serve the Space Captain protocol over TLS",
		Long:  rootLong,
		Example: `  sc-server                                   # :4242, certs/ (made on first run)
  sc-server --listen 127.0.0.1:0 --log-format json
  sc-server --cert /etc/sc/server.crt --key /etc/sc/server.key --key-password-file /run/secrets/pw
  sc-server --metrics-listen 127.0.0.1:9242   # Prometheus on /metrics, probes on /healthz and /readyz
  sc-server --check                           # validate flags and files, then exit (ExecStartPre)
  sc-server --proxy-protocol-from 10.0.1.0/28 # behind HAProxy with send-proxy-v2 on 10.0.1.0/28
  sc-server --dtls                            # TLS on TCP :4242 and DTLS on UDP :4242
  sc-server --key certs/server.uri --token-pin-file /run/credentials/sc-server.service/token-pin
  sc-server --plaintext --listen :4243        # comparison runs only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd, &env, func() *pflag.FlagSet { return NewRootCmd(Env{}).Flags() })
			if err != nil {
				return err
			}
			o.settings = s
			if given(cmd, s, "cert") && !given(cmd, s, "key") {
				// The key that goes with --cert game.crt is game.key,
				// not certs/server.key.
				o.key = pki.SiblingKeyPath(o.cert)
			}
			if !given(cmd, s, "key") {
				// A layout with its keys in a token has server.uri.
				o.key = pki.ResolveKeyPath(o.key)
			}
			if err := o.validate(); err != nil {
				return s.annotate(err)
			}
			if err := o.validateDTLS(); err != nil {
				return s.annotate(err)
			}
			if err := o.validateClients(); err != nil {
				return s.annotate(err)
			}
			if print, _ := cmd.Flags().GetBool("print-config"); print {
				return s.print(cmd.OutOrStdout(), cmd.Flags())
			}
			o.pass.Prompt, o.pass.Context = cmd.ErrOrStderr(), cmd.Context()
			return run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), &env, o)
		},
	}
	cli.SetupRoot(cmd)
	defaultCert := pki.DefaultLayout("").ServerCert
	defaultKey := pki.DefaultLayout("").ServerKey
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&o.listen, "listen", DefaultListen, "TCP `ADDRESS` to listen on, HOST:PORT (port 0 picks a free port; the log says which)")
	fs.StringVar(&o.cert, "cert", defaultCert, "certificate (chain) `FILE` to serve; with --key missing too, the default layout is made in its directory")
	fs.StringVar(&o.key, "key", defaultKey, "private key `FILE` of --cert (with --cert alone: its name with .key, e.g. game.key for game.crt, or .uri when only that exists)"+cli.KeyRefHelp())
	fs.StringVar(&o.nextKey, "next-key", "", "next key `FILE`, whose pin KEYS announces when it exists (default: --key with .next before its extension, e.g. "+pki.NextKeyPath(defaultKey)+"; none when --key is a URI)"+cli.KeyRefHelp())
	fs.StringVar(&o.caKey, "ca-key", "", "CA key `FILE` the server renews its certificate with (default: ca.key, or ca.uri, beside --cert)"+cli.KeyRefHelp())
	fs.StringVar(&o.nextPub, "next-pub", "", "public next key `FILE` (PEM), for a next key kept offline: KEYS announces its pin without the server holding the private key; reloaded on change; a missing file is none (default: --next-key with .pub, e.g. "+nextPubPath(pki.NextKeyPath(defaultKey))+"; sc-cert export-next writes it)")
	fs.StringArrayVar(&o.nextPins, "next-pin", nil, "announce this `PIN` (sha256//BASE64) as a next key in KEYS, for a next key kept offline (can be repeated)")
	fs.StringVar(&o.revokedKeys, "revoked-keys", "", "`FILE` of revoked server-key pins, one a line, which KEYS announces so that clients that trust them stop; reloaded on change; a missing file is none (default: "+RevokedKeysFile+" beside --cert; sc-cert rotate --revoke-old writes it)")
	fs.StringVar(&o.keyChange, "key-change", keyChangeWarn, "what to do with a certificate on a key that is neither the key served before nor an announced next key (clients pinned to the old key refuse it): `POLICY` warn (serve it, log an ERROR) or refuse (keep serving the old pair; at start, do not start)")
	fs.StringVar(&o.keyState, "key-state", "", "`FILE` where the server remembers the key it served and the next keys it announced, so that the --key-change guard works across restarts; written atomically (default: "+KeyStateFile+" beside --cert; on a read-only mount, a path on a persistent volume)")
	fs.StringVar(&o.pass.File, "key-password-file", "", "read the passphrase of encrypted keys from the first line of `FILE`, or of a pipe written and closed within 10s, e.g. <(pass show game/key) (else $"+cli.PassphraseEnv+", else a terminal prompt)")
	o.tokenPIN.AddFlags(fs)
	fs.StringVar(&o.ticketKeys, "ticket-keys", "", "session-ticket key `FILE` shared by several servers, so a session from one resumes on another; reloaded on change (default: keys made in memory, replaced every "+pki.DefaultTicketKeyRotation.String()+")")
	cli.DurationVar(fs, &o.ticketKeyRotation, "ticket-key-rotation", pki.DefaultTicketKeyRotation, "how often in-memory ticket keys are replaced, and how long a key that left --ticket-keys still decrypts tickets (so a session resumes for at most about twice this)")
	fs.BoolVar(&o.autoRenew, "auto-renew", true, "renew the certificate on the same key (same pin) two thirds into its lifetime, when the CA key (or, self-signed, its own key) is at hand; false only warns before expiry")
	fs.BoolVar(&o.plaintext, "plaintext", false, "serve WITHOUT TLS: no encryption, no server authentication (comparison runs only)")
	fs.Var(tlsVersionValue{&o.minTLS}, "min-tls", "lowest TLS `VERSION` accepted: 1.2 or 1.3")
	fs.Var(groupsValue{&o.groups}, "groups", "key-exchange groups in order of preference, comma-separated `LIST` of "+strings.Join(cli.GroupNames(), ", ")+" (default: Go's, the post-quantum hybrid X25519MLKEM768 first; it costs about 35-40% more CPU per full handshake than X25519 alone, and a list of hybrids only shuts out TLS 1.2 clients)")
	fs.IntVar(&o.srv.MaxConns, "max-conns", server.DefaultMaxConns, "most connections held at once (`NUMBER`), handshakes included; more are refused at once (each needs a file descriptor)")
	fs.IntVar(&o.srv.SourceMaxConns, "source-max-conns", server.DefaultSourceMaxConns, "most connections held at once from one client address (`NUMBER`; an IPv6 /64 counts as one address), handshakes included; more are refused before any handshake work; 0 turns the limit off")
	fs.Float64Var(&o.srv.SourceHandshakeRate, "source-handshake-rate", server.DefaultSourceHandshakeRate, "most new connections (TLS handshakes) per second from one client address (`RATE`; an IPv6 /64 counts as one), with a burst of twice as many after a quiet spell; more are refused before any handshake work; 0 turns the limit off (for load tests from one machine)")
	fs.Var(prefixesValue{&o.srv.ProxyProtocolFrom}, "proxy-protocol-from", "trust PROXY protocol headers (v1 and v2) from these load balancers, comma-separated `CIDR`s or addresses (can be repeated): their connections must begin with one, and the client address in it is what logs and the per-source limits see; headers from anyone else are never honoured (default: none, off)")
	fs.IntVar(&o.srv.MaxMessage, "max-message", proto.DefaultMaxBody, fmt.Sprintf("largest request body accepted, in `BYTES` (at most %d); a longer one gets an ERROR reply and the connection is closed", server.MaxMessageLimit))
	cli.DurationVar(fs, &o.srv.HandshakeTimeout, "handshake-timeout", server.DefaultHandshakeTimeout, "longest a TLS handshake may take, from accept to done")
	cli.DurationVar(fs, &o.srv.IdleTimeout, "idle-timeout", server.DefaultIdleTimeout, "longest wait for the next request (or the rest of one) before the connection is closed")
	cli.DurationVar(fs, &o.srv.WriteTimeout, "write-timeout", server.DefaultWriteTimeout, "longest a client may take to accept a reply before it is cut (one that never reads)")
	cli.DurationVar(fs, &o.shutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, "longest graceful drain after SIGINT/SIGTERM before open connections are cut")
	fs.StringVar(&o.logFormat, "log-format", "text", "log `FORMAT`: text (for people) or json (for machines); logs go to standard error")
	fs.Var(levelValue{&o.logLevel}, "log-level", "lowest log `LEVEL`: debug (every connection), info, warn or error")
	fs.StringVar(&o.srv.Engine, "engine", server.Engines()[0], "connection `ENGINE`: "+strings.Join(server.Engines(), ", "))
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "serve /metrics, /healthz and /readyz on `ADDRESS`, HOST:PORT, apart from --listen (default: off)")
	addDTLSFlags(fs, &o.dtls)
	addClientFlags(fs, &o.clients)
	fs.BoolVar(&o.check, "check", false, "check the flags, the certificate, key, next key and ticket-key files, print what was found and exit (0: usable); listens on nothing and writes nothing")
	fs.BoolVar(&o.json, "json", false, "with --check, print the result as JSON")
	configFlags(fs)
	cmd.MarkFlagsMutuallyExclusive("check", "print-config")
	cli.CompleteValues(cmd, "log-format", "text", "json")
	cli.CompleteValues(cmd, "log-level", "debug", "info", "warn", "error")
	cli.CompleteValues(cmd, "engine", server.Engines()...)
	cli.CompleteValues(cmd, "key-change", keyChangeWarn, keyChangeRefuse)
	cli.CompleteValues(cmd, "min-tls", "1.2", "1.3")
	cli.CompleteValues(cmd, "groups", cli.GroupNames()...)
	cli.CompleteValues(cmd, "client-auth", "off", "optional", "require")
	cli.CompleteValues(cmd, "revoke-live", "cut", "keep")
	for _, f := range []string{"cert", "key", "next-key", "ca-key", "next-pub", "next-pin", "revoked-keys", "key-state", "key-change", "key-password-file", "token-pin-file", "min-tls", "ticket-keys", "ticket-key-rotation", "auto-renew"} {
		cmd.MarkFlagsMutuallyExclusive("plaintext", f)
	}
	return cmd
}

// validate checks what flag parsing cannot, naming the flags at fault.
func (o *options) validate() error {
	if _, port, err := net.SplitHostPort(o.listen); err != nil {
		return cli.Usagef("--listen %q: want HOST:PORT, e.g. :4242 or 127.0.0.1:4242", o.listen)
	} else if err := checkPort(port); err != nil {
		return cli.Usagef("--listen %q: %v", o.listen, err)
	}
	if o.json && !o.check {
		return cli.Usagef("--json is for --check; the server's own log is JSON with --log-format json")
	}
	if o.metricsListen != "" {
		if err := validateMetricsListen(o.metricsListen, o.listen); err != nil {
			return err
		}
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return cli.Usagef("--log-format %q: want text or json", o.logFormat)
	}
	if o.srv.MaxConns < 1 {
		return cli.Usagef("--max-conns %d: want at least 1", o.srv.MaxConns)
	}
	if o.srv.SourceMaxConns < 0 {
		return cli.Usagef("--source-max-conns %d: want a number of connections, or 0 for no limit", o.srv.SourceMaxConns)
	}
	if r := o.srv.SourceHandshakeRate; r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		return cli.Usagef("--source-handshake-rate %v: want handshakes per second, e.g. 50 or 0.5, or 0 for no limit", r)
	}
	if o.srv.MaxMessage < 1 || o.srv.MaxMessage > server.MaxMessageLimit {
		return cli.Usagef("--max-message %d: want 1 to %d bytes", o.srv.MaxMessage, server.MaxMessageLimit)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"--handshake-timeout", o.srv.HandshakeTimeout},
		{"--idle-timeout", o.srv.IdleTimeout},
		{"--write-timeout", o.srv.WriteTimeout},
		{"--shutdown-timeout", o.shutdownTimeout},
		{"--ticket-key-rotation", o.ticketKeyRotation},
	} {
		if d.v <= 0 {
			return cli.Usagef("%s %v: want a positive duration, e.g. 5s", d.flag, d.v)
		}
	}
	known := false
	for _, e := range server.Engines() {
		known = known || e == o.srv.Engine
	}
	if !known {
		return cli.Usagef("--engine %q: this build has %s", o.srv.Engine, strings.Join(server.Engines(), ", "))
	}
	// 0 on the command line turns a limit off; in the server core's
	// options 0 means the default and a negative value turns it off.
	if o.srv.SourceMaxConns == 0 {
		o.srv.SourceMaxConns = -1
	}
	if o.srv.SourceHandshakeRate == 0 {
		o.srv.SourceHandshakeRate = -1
	}
	if o.nextKey == "" && !o.plaintext && !pki.IsKeyURI(o.key) {
		o.nextKey = pki.NextKeyPath(o.key)
	}
	if o.nextPub == "" && !o.plaintext {
		o.nextPub = nextPubPath(o.nextKey)
	}
	for i, p := range o.nextPins {
		pin, err := pinning.ParsePin(p)
		if err != nil {
			return cli.Usagef("--next-pin %q: %v", p, err)
		}
		o.nextPins[i] = pin.String()
	}
	if o.revokedKeys == "" && !o.plaintext {
		o.revokedKeys = filepath.Join(filepath.Dir(o.cert), RevokedKeysFile)
	}
	if o.keyState == "" && !o.plaintext {
		o.keyState = filepath.Join(filepath.Dir(o.cert), KeyStateFile)
	}
	if o.keyChange != keyChangeWarn && o.keyChange != keyChangeRefuse {
		return cli.Usagef("--key-change %q: want warn or refuse", o.keyChange)
	}
	return nil
}

// validateMetricsListen checks --metrics-listen: HOST:PORT, and not the
// game port. Two listeners on one port fail at bind time anyway; saying so
// here names both flags. Port 0 picks a free port for each, so it never
// collides.
func validateMetricsListen(metrics, game string) error {
	mhost, mport, err := net.SplitHostPort(metrics)
	if err != nil {
		return cli.Usagef("--metrics-listen %q: want HOST:PORT, e.g. 127.0.0.1:9242", metrics)
	}
	ghost, gport, _ := net.SplitHostPort(game) // checked before
	if mport == "0" || !samePort(mport, gport) {
		return nil
	}
	if mhost == ghost || anyHost(mhost) || anyHost(ghost) {
		return cli.Usagef("--metrics-listen %s is the game port (--listen %s): give the metrics listener a port of its own, e.g. 127.0.0.1:9242", metrics, game)
	}
	return nil
}

// given reports whether a setting was given (command line, environment or
// configuration file) rather than left at its default.
func given(cmd *cobra.Command, s *settings, name string) bool {
	return cmd.Flags().Changed(name) || (s != nil && s.origins[name].kind != fromDefault)
}

// checkPort refuses a port number out of range, which net.Listen would
// report as a lookup failure; a service name is left to it.
func checkPort(port string) error {
	n, err := strconv.Atoi(port)
	if err != nil {
		return nil
	}
	if n < 0 || n > 65535 {
		return fmt.Errorf("port %d: want 0 to 65535 (0 picks a free port)", n)
	}
	return nil
}

// samePort compares ports as numbers ("04242" is 4242); a name such as
// "http" is compared as written.
func samePort(a, b string) bool {
	na, errA := strconv.Atoi(a)
	nb, errB := strconv.Atoi(b)
	if errA == nil && errB == nil {
		return na == nb
	}
	return a == b
}

// anyHost reports whether a listen host means every address.
func anyHost(h string) bool {
	ip := net.ParseIP(h)
	return h == "" || (ip != nil && ip.IsUnspecified())
}
