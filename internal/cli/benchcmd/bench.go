package benchcmd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/bench"
	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spf13/cobra"
)

// DefaultServer is the address bench dials unless --server says otherwise.
const DefaultServer = "127.0.0.1:4242"

type benchOptions struct {
	opts       bench.Options
	points     []int
	server     string
	plaintext  bool
	caFile     string
	pins       []string
	insecure   bool
	serverName string
	version    string
	groups     string
	json       bool
	udp        bool
	identity   string
	dtls       *client.DTLSOptions // set by tlsConfig with --udp
}

// NewCmd returns the bench command, to be mounted under sc-client's root:
//
//	root.AddCommand(benchcmd.NewCmd())
func NewCmd() *cobra.Command {
	o := &benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench MODE",
		Short: "Load-test a server: handshakes, ECHO ping-pong, pipelined ECHOs, idle connections or a scaling run",
		Long: `bench drives a Space Captain server and reports operations per second,
latency (p50, p99, p99.9), errors, and the TLS version, suite, group and
resumed fraction. Given the PID of a server on this machine (--pid, Linux),
it adds the server's CPU seconds and memory from /proc, so that figures can
be given per server CPU-second and per connection: the client shares the
machine's CPUs, so ops per second alone say as much about the client as
about the server.

Modes:
  handshake  --conns at a time, connection after connection: dial, TLS
             handshake, one ECHO of --size bytes, close. Full handshakes,
             or resumed ones with --resume (a shared session cache).
  echo       --conns connections, each sending an ECHO of --size bytes
             and waiting for its reply, again and again.
  pipeline   --conns connections, each writing --depth ECHOs at once
             before reading their replies, again and again.
  idle       --conns connections opened (--dial-concurrency at a time),
             one ECHO of --size bytes on each, then held for --duration.
             The server's memory is sampled --settle after the last one
             opened: (RSS with them open − RSS before) / connections.
  scale      connections opened in steps, to each count of --points in
             turn (default 1,000 to 19,000), while every open connection
             sends an ECHO of --size bytes each --interval (default 1 s).
             At each point, --settle after the last connection opened,
             it measures for --duration: the server's CPU time per
             second and memory per connection (with --pid), the latency
             of the handshakes that opened the point's connections and
             that of the ECHOs. How the server's cost grows with players.

A run ends after --duration or --count operations, whichever comes first
(idle opens --conns connections and holds them --duration; scale measures
each point for --duration). Connections opened before the measurement
(echo, pipeline, scale) are not counted in it.

--udp measures DTLS 1.2 over UDP instead, against sc-server --dtls: the
same modes, with the handshake mode's cookie exchange included.

The server is verified with --ca, --pin (or both), or not at all with
--insecure — fine for load-testing your own server, and reported on stderr.
--plaintext speaks to a server started in plaintext mode.

--identity FILE presents the key in FILE (and its certificate, FILE.crt
or for FILE.key FILE.crt, when it exists; else a self-signed one made in
memory), as sc-client --identity does, whenever the server asks for a
client certificate: every mode then measures mutual TLS against a server
started with --client-auth. bench presents no identity unless given one
(not even sc-client's default identity), so that a run measures what its
command line says.

All of bench's connections come from one address, and sc-server limits
each source address by default (1,000 open connections, 50 new ones a
second): start the server under test with --source-max-conns 0
--source-handshake-rate 0, or the run measures those limits (refused
connections show as errors).

A progress bar is drawn on stderr when it is a terminal. The report goes
to stdout, as JSON with --json. The command fails (exit 1) after printing
the report if any operation failed.`,
		Example: `  sc-client bench handshake --ca certs/ca.crt --pid $(pidof sc-server)
  sc-client bench handshake --resume --pin sha256//... --tls 1.3
  sc-client bench echo --conns 50 --size 64 --insecure --duration 10s
  sc-client bench pipeline --conns 50 --depth 64 --plaintext --json
  sc-client bench idle --conns 15000 --size 4096 --ca certs/ca.crt --pid 1234
  sc-client bench scale --points 1000,5000,19000 --duration 20s --ca certs/ca.crt --pid 1234 --json
  sc-client bench handshake --identity bench.key --pin sha256//... --pid $(pidof sc-server)  # mutual TLS
  sc-client bench handshake --udp --pin sha256//... --pid $(pidof sc-server)  # DTLS`,
		Args:      cli.ExactArgs(1, "a MODE: handshake, echo, pipeline, idle or scale"),
		ValidArgs: []string{"handshake", "echo", "pipeline", "idle", "scale"},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.opts.Mode = bench.Mode(args[0])
			if o.opts.Mode == bench.ModeScale {
				if cmd.Flags().Changed("conns") {
					return cli.Usagef("--conns is not for the scale mode: give the connection counts with --points")
				}
				o.opts.Conns = 0
				if len(o.points) > 0 {
					o.opts.Points = o.points
				}
			} else if cmd.Flags().Changed("points") || cmd.Flags().Changed("interval") {
				return cli.Usagef("--points and --interval are for the scale mode, not %s", args[0])
			}
			return runBench(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.server, "server", DefaultServer, "server `HOST:PORT`")
	fs.IntVar(&o.opts.Conns, "conns", bench.DefaultConns, "`N` connections: held at once (echo, pipeline, idle), or handshakes at a time")
	fs.IntSliceVar(&o.points, "points", nil, "scale: connection `COUNTS` to measure at, increasing, comma-separated (default 1000,2000,5000,10000,15000,19000)")
	cli.DurationVar(fs, &o.opts.Interval, "interval", bench.DefaultInterval, "scale: how often each connection sends an ECHO")
	fs.IntVar(&o.opts.Depth, "depth", 0, "`D` ECHOs each connection writes at once (pipeline) (default 64)")
	fs.IntVar(&o.opts.Size, "size", bench.DefaultSize, "ECHO body size in `BYTES`")
	cli.DurationVar(fs, &o.opts.Duration, "duration", bench.DefaultDuration, "how long to measure (idle: how long to hold the connections; scale: each point)")
	fs.Int64Var(&o.opts.Count, "count", bench.DefaultCount, "stop after `N` operations (handshakes or ECHOs), if --duration has not ended the run first")
	fs.BoolVar(&o.opts.Resume, "resume", false, "resume TLS sessions (handshake mode: every handshake after the first resumes)")
	fs.IntVar(&o.opts.DialConcurrency, "dial-concurrency", bench.DefaultDialConcurrency, "at most `N` connections dialing and handshaking at once")
	cli.DurationVar(fs, &o.opts.Timeout, "timeout", bench.DefaultTimeout, "bound on each dial and handshake, and on an operation left running at the end")
	cli.DurationVar(fs, &o.opts.Wait, "wait", 0, "keep retrying the first connection this long while the server starts")
	cli.DurationVar(fs, &o.opts.Settle, "settle", bench.DefaultSettle, "idle: sample the server's memory this long after the last connection opened; scale: wait this long before measuring each point")
	fs.IntVar(&o.opts.PID, "pid", 0, "`PID` of the server process on this machine: report its CPU seconds and memory (Linux /proc)")
	fs.BoolVar(&o.plaintext, "plaintext", false, "speak plaintext, to a server started without TLS")
	fs.StringVar(&o.caFile, "ca", "", "verify the server's chain against the CA certificates in `FILE`")
	fs.StringArrayVar(&o.pins, "pin", nil, "trust the server's key if it has this `PIN` (sha256//BASE64, or a \";\"-separated list) (can be repeated)")
	fs.BoolVar(&o.insecure, "insecure", false, "do not verify the server at all (for load-testing your own server)")
	fs.StringVar(&o.serverName, "server-name", "", "TLS server `NAME` to send (SNI) and verify with --ca (default: the host of --server)")
	fs.StringVar(&o.version, "tls", "", "TLS `VERSION` to use: 1.2 or 1.3 (default: the best both ends have)")
	fs.StringVar(&o.groups, "groups", "", "key exchange `GROUPS` to offer, in order, comma-separated: "+strings.Join(cli.GroupNames(), ", ")+" (default: Go's, the post-quantum hybrid first)")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	fs.BoolVar(&o.udp, "udp", false, "speak DTLS 1.2 over UDP to a sc-server --dtls (handshakes include the cookie exchange; idle sessions must outlive the server's --dtls-idle-timeout)")
	fs.StringVar(&o.identity, "identity", "", "present the key in `FILE` (and FILE.crt, or for FILE.key FILE.crt, when it exists) when the server asks for a client certificate (default: none)")
	cmd.MarkFlagsMutuallyExclusive("plaintext", "ca")
	cmd.MarkFlagsMutuallyExclusive("plaintext", "identity")
	cmd.MarkFlagsMutuallyExclusive("udp", "identity")
	cmd.MarkFlagsMutuallyExclusive("plaintext", "pin")
	cmd.MarkFlagsMutuallyExclusive("plaintext", "insecure")
	cmd.MarkFlagsMutuallyExclusive("insecure", "ca")
	cmd.MarkFlagsMutuallyExclusive("insecure", "pin")
	_ = cmd.RegisterFlagCompletionFunc("tls", cobra.FixedCompletions([]string{"1.2", "1.3"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func runBench(ctx context.Context, stdout, stderr io.Writer, o *benchOptions) error {
	opts := o.opts
	opts.Addr = o.server
	cfg, err := o.tlsConfig(stderr)
	if err != nil {
		return err
	}
	opts.TLSConfig = cfg
	if o.udp {
		if opts.Resume {
			return cli.Usagef("--resume can't be used with --udp: DTLS sessions are not resumed")
		}
		opts.TLSConfig, opts.DTLS = nil, o.dtls
	}
	if opts.Resume && cfg == nil {
		return cli.Usagef("--resume needs TLS: it can't be used with --plaintext")
	}
	b, err := bench.New(opts)
	if err != nil {
		if errors.Is(err, bench.ErrNoProc) {
			return cli.WithCode(cli.ExitUsage, err, "--pid samples the server from Linux's /proc; leave it out here and compare ops per second instead")
		}
		return cli.WithCode(cli.ExitUsage, err)
	}
	stopBar := startProgress(stderr, b, opts.Mode)
	rep, err := b.Run(ctx)
	stopBar()
	if err != nil {
		if errors.Is(err, bench.ErrNoConnection) {
			return cli.WithHint(err, "is the server running at "+o.server+", and with the same --plaintext/TLS setting? --wait retries while it starts")
		}
		return err
	}
	if o.json {
		err = cli.PrintJSON(stdout, rep)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	if rep.Errors > 0 {
		return fmt.Errorf("%d operations failed (first: %s)", rep.Errors, rep.ErrorSamples[0])
	}
	return nil
}

// tlsConfig builds the client TLS config from the trust and TLS flags; nil
// for --plaintext.
func (o *benchOptions) tlsConfig(stderr io.Writer) (*tls.Config, error) {
	if o.plaintext {
		if o.version != "" || o.groups != "" || o.serverName != "" || o.udp {
			return nil, cli.Usagef("--tls, --groups, --server-name and --udp can't be used with --plaintext")
		}
		return nil, nil
	}
	if o.udp && (o.version != "" || o.groups != "") {
		return nil, cli.Usagef("--tls and --groups can't be used with --udp: DTLS is 1.2, and its groups are the DTLS stack's")
	}
	base := &tls.Config{}
	switch o.version {
	case "":
	case "1.2":
		base.MinVersion, base.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	case "1.3":
		base.MinVersion, base.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
	default:
		return nil, cli.Usagef("--tls %q: want 1.2 or 1.3", o.version)
	}
	if o.groups != "" {
		ids, err := cli.ParseGroups(o.groups)
		if err != nil {
			return nil, cli.Usagef("--groups: %v", err)
		}
		base.CurvePreferences = ids
	}
	host, _, err := net.SplitHostPort(o.server)
	if err != nil {
		return nil, cli.Usagef("--server %q: want HOST:PORT", o.server)
	}
	topts := pinning.TrustOptions{Host: o.server, ServerName: o.serverName, Config: base}
	switch {
	case o.insecure:
		topts.Mode = pinning.ModeInsecure
		var once sync.Once
		topts.Warn = func(error) {
			once.Do(func() {
				fmt.Fprintf(stderr, "sc-client: warning: --insecure: %s's certificate is not verified (fine for load-testing your own server)\n", host)
			})
		}
	case o.caFile != "" || len(o.pins) > 0:
		if o.caFile != "" {
			data, _, err := trustfile.Read(o.caFile, trustfile.CACertificate)
			if err != nil {
				return nil, fmt.Errorf("reading the CA file: %w", err)
			}
			topts.Roots = x509.NewCertPool()
			if !topts.Roots.AppendCertsFromPEM(data) {
				return nil, cli.WithHint(fmt.Errorf("no PEM certificate in the CA file %s", o.caFile),
					"--ca wants the CA certificate (certs/ca.crt from sc-cert init), not a key")
			}
			topts.Mode = pinning.ModeCA
		}
		if len(o.pins) > 0 {
			set, err := pinning.ParseSet(o.pins...)
			if err != nil {
				return nil, cli.Usagef("--pin: %v", err)
			}
			topts.Pins = set
			topts.Mode = pinning.ModePin
			if o.caFile != "" {
				topts.Mode = pinning.ModeCAPin
			}
		}
	default:
		return nil, cli.WithCode(cli.ExitUsage, errors.New("no way to trust the server: give --ca FILE, --pin PIN or --insecure (or --plaintext)"),
			"sc-cert fingerprint "+o.server+" prints the server's pin")
	}
	trust, err := pinning.NewTrust(topts)
	if err != nil {
		return nil, err
	}
	if o.udp {
		o.dtls = &client.DTLSOptions{Verify: trust.VerifyPeer}
		if name := trust.ServerName(); net.ParseIP(name) == nil {
			o.dtls.ServerName = name
		}
	}
	cfg := trust.Config()
	if o.identity != "" {
		id, err := cli.LoadIdentity(o.identity, nil)
		if err != nil {
			return nil, err
		}
		// Presented only when the server asks for one, as sc-client does.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return id, nil }
	}
	return cfg, nil
}

// startProgress draws a progress bar on w while b runs, if w is a
// terminal, and returns the function that stops it and clears the line.
func startProgress(w io.Writer, b *bench.Bench, mode bench.Mode) (stop func()) {
	if !cli.IsTerminal(w) {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			fmt.Fprintf(w, "\r\x1b[K%s", progressLine(mode, b.Progress()))
			select {
			case <-done:
				fmt.Fprint(w, "\r\x1b[K")
				return
			case <-t.C:
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// progressLine renders one line of the progress bar.
func progressLine(mode bench.Mode, p bench.Progress) string {
	const width = 30
	filled := int(p.Done * width)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
	what := "ops"
	switch mode {
	case bench.ModeIdle:
		what = "connections"
	case bench.ModeScale:
		what = "ECHOs measured"
	}
	rate := ""
	if s := p.Elapsed.Seconds(); s > 0 && mode != bench.ModeIdle {
		rate = fmt.Sprintf(" %.0f/s", float64(p.Ops)/s)
	}
	return fmt.Sprintf("%s %-10s [%s] %3.0f%% %d %s%s, %d errors", mode, p.Phase, bar, 100*p.Done, p.Ops, what, rate, p.Errors)
}
