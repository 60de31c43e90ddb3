package servercmd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/pflag"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/dtls"
)

// dtlsOptions are the DTLS flags. The certificate, the key files, the
// per-source limits, --max-message and --handshake-timeout are shared
// with TCP.
type dtlsOptions struct {
	// enabled serves DTLS 1.2 on UDP beside the TCP listener (--dtls, or
	// --dtls-listen given). Default false.
	enabled bool
	// listen is the UDP address. Default: --listen's, on UDP.
	listen string
	// samePort is set when listen was left to its default: DTLS then
	// takes the port TCP has, also when --listen's port 0 picked it.
	samePort bool
	// idleTimeout closes a session with no datagram from its client for
	// this long. Default dtls.DefaultIdleTimeout (30 s).
	idleTimeout time.Duration
	// maxSessions bounds the sessions held at once. Default
	// dtls.DefaultMaxSessions.
	maxSessions int
}

// addDTLSFlags adds the DTLS flags to fs.
func addDTLSFlags(fs *pflag.FlagSet, d *dtlsOptions) {
	fs.BoolVar(&d.enabled, "dtls", false, "also serve DTLS 1.2 on UDP, on --dtls-listen (the same certificate, keys, pins and rotation as TCP)")
	fs.StringVar(&d.listen, "dtls-listen", "", "UDP `ADDRESS` for DTLS, HOST:PORT (port 0 picks a free port); implies --dtls (default: the address and port --listen has, on UDP; with --listen's port 0, a port free on both)")
	cli.DurationVar(fs, &d.idleTimeout, "dtls-idle-timeout", dtls.DefaultIdleTimeout, "close a DTLS session when its client has sent nothing for this long (UDP has no FIN: this is how a vanished player is noticed)")
	fs.IntVar(&d.maxSessions, "dtls-max-sessions", dtls.DefaultMaxSessions, "most DTLS sessions held at once (`NUMBER`); a client past it is refused once it has returned its cookie")
}

// validateDTLS checks the DTLS flags, naming the flags at fault. A DTLS
// setting other than its default without DTLS is a mistake worth naming
// (a default one is not: --print-config writes every setting).
func (o *options) validateDTLS() error {
	d := &o.dtls
	if d.listen != "" {
		d.enabled = true
	}
	if !d.enabled {
		switch {
		case d.idleTimeout != dtls.DefaultIdleTimeout:
			return cli.Usagef("--dtls-idle-timeout is for DTLS: add --dtls")
		case d.maxSessions != dtls.DefaultMaxSessions:
			return cli.Usagef("--dtls-max-sessions is for DTLS: add --dtls")
		}
		return nil
	}
	if o.plaintext {
		return cli.Usagef("--dtls can't be used with --plaintext: DTLS is always encrypted")
	}
	if d.listen == "" {
		d.listen, d.samePort = o.listen, true
	}
	if _, _, err := net.SplitHostPort(d.listen); err != nil {
		return cli.Usagef("--dtls-listen %q: want HOST:PORT, e.g. :4242 or 127.0.0.1:4242", d.listen)
	}
	if d.idleTimeout <= 0 {
		return cli.Usagef("--dtls-idle-timeout %v: want a positive duration, e.g. 30s", d.idleTimeout)
	}
	if d.maxSessions < 1 {
		return cli.Usagef("--dtls-max-sessions %d: want at least 1", d.maxSessions)
	}
	return nil
}

// dtlsServer is the running DTLS side of sc-server.
type dtlsServer struct {
	srv  *dtls.Server
	addr net.Addr
	errc chan error
}

// startDTLS serves DTLS on pc (bound by listenGame) with the TCP
// server's certificate source: every reload (file events, SIGHUP,
// renewal) reaches the next DTLS handshake. It returns nil, nil without
// --dtls (pc nil). pc is closed on error.
func startDTLS(ctx context.Context, log *slog.Logger, o *options, src *servedCert, obs *observer, pc net.PacketConn) (*dtlsServer, error) {
	if pc == nil {
		return nil, nil
	}
	opts := dtls.Options{
		GetCertificate:    src.GetCertificate,
		Keys:              src.Keys,
		MaxSessions:       o.dtls.maxSessions,
		SourceMaxSessions: o.srv.SourceMaxConns,
		// --source-max-conns 0 (a load test from one address) lifts the
		// per-source cap on half-open handshakes too.
		SourceMaxHalfOpen:   o.srv.SourceMaxConns,
		SourceHandshakeRate: o.srv.SourceHandshakeRate,
		MaxMessage:          o.srv.MaxMessage,
		HandshakeTimeout:    o.srv.HandshakeTimeout,
		IdleTimeout:         o.dtls.idleTimeout,
		Logger:              log,
	}
	if m := obs.metrics(); m != nil && m.DTLS() != nil {
		opts.Events = m.DTLS()
	}
	srv, err := dtls.New(opts)
	if err != nil {
		pc.Close()
		return nil, err
	}
	d := &dtlsServer{srv: srv, addr: pc.LocalAddr(), errc: make(chan error, 1)}
	// As for TCP, Serve's context is never cancelled: Shutdown is the
	// graceful stop.
	go func() { d.errc <- srv.Serve(context.WithoutCancel(ctx), pc) }()
	return d, nil
}

// pairTries bounds the ports tried for TCP and UDP together when --listen's
// port 0 lets the system pick one for both (listenGame).
const pairTries = 10

// listenGame binds the game port: TCP on --listen and, with DTLS, UDP on
// --dtls-listen (pc is nil without DTLS). listenTCP is net.Listen unless a
// test replaces it.
//
// By default DTLS takes TCP's port, so that players give one HOST:PORT
// for both. When --listen's port is 0 the system picks a port free on TCP,
// which any other program's UDP socket may hold (a DNS client's, another
// server's): the pair is then tried again with a new port, up to
// pairTries times, so that port 0 works whatever holds UDP ports. A port
// given (the default :4242) is bound as given: if UDP has it taken, the
// error says so and how to choose another.
func listenGame(o *options, listenTCP func(network, address string) (net.Listener, error)) (ln net.Listener, pc net.PacketConn, err error) {
	if listenTCP == nil {
		listenTCP = net.Listen
	}
	tcpErr := func(err error) error {
		return cli.WithHint(fmt.Errorf("listening on %s: %w", o.listen, err),
			"is another server using the port? choose another with --listen, e.g. --listen 127.0.0.1:4243")
	}
	udpErr := func(addr string, err error, hint string) error {
		return cli.WithHint(fmt.Errorf("listening on UDP %s for DTLS: %w", addr, err), hint)
	}
	const udpHint = "is another program using the UDP port? choose another with --dtls-listen, e.g. --dtls-listen 127.0.0.1:4243"
	host, port, _ := net.SplitHostPort(o.listen)
	paired := o.dtls.enabled && o.dtls.samePort && port == "0"
	tries := 1
	if paired {
		tries = pairTries
	}
	var lastUDP string
	for range tries {
		if ln, err = listenTCP("tcp", o.listen); err != nil {
			return nil, nil, tcpErr(err)
		}
		if !o.dtls.enabled {
			return ln, nil, nil
		}
		udp := o.dtls.listen
		if o.dtls.samePort {
			udp = net.JoinHostPort(host, fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
		}
		if pc, err = net.ListenPacket("udp", udp); err == nil {
			return ln, pc, nil
		}
		ln.Close()
		if !paired || !addrInUse(err) {
			return nil, nil, udpErr(udp, err, udpHint)
		}
		lastUDP = udp
	}
	return nil, nil, udpErr(lastUDP, err,
		fmt.Sprintf("the %d ports the system picked for TCP were all taken on UDP; give DTLS a port of its own with --dtls-listen, e.g. --dtls-listen %s", pairTries, net.JoinHostPort(host, "0")))
}

// errs returns the channel Serve's end comes on; nil (which never
// delivers) without DTLS.
func (d *dtlsServer) errs() <-chan error {
	if d == nil {
		return nil
	}
	return d.errc
}

// shutdown stops the DTLS server gracefully (close_notify to every
// session) within ctx, and waits for Serve to return.
func (d *dtlsServer) shutdown(ctx context.Context, log *slog.Logger) {
	if d == nil {
		return
	}
	if err := d.srv.Shutdown(ctx); err != nil {
		log.WarnContext(ctx, "stopped: the DTLS sessions did not all close within --shutdown-timeout; the rest were cut", "err", err)
	}
	<-d.errc
}

// logAttrs are the "serving" log line's DTLS attributes.
func (d *dtlsServer) logAttrs(o *options) []any {
	if d == nil {
		return nil
	}
	return []any{"dtls_addr", d.addr.String(), "dtls_idle_timeout", o.dtls.idleTimeout.String()}
}
