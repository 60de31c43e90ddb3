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
	fs.StringVar(&d.listen, "dtls-listen", "", "UDP `ADDRESS` for DTLS, HOST:PORT; implies --dtls (default: the address and port --listen has, on UDP, also when --listen's port 0 picked one)")
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
		d.listen = o.listen
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

// startDTLS binds --dtls-listen and serves DTLS there with the TCP
// server's certificate source: every reload (file events, SIGHUP,
// renewal) reaches the next DTLS handshake. It returns nil, nil without
// --dtls.
func startDTLS(ctx context.Context, log *slog.Logger, o *options, src *certSource, obs *observer, tcp net.Addr) (*dtlsServer, error) {
	if !o.dtls.enabled || src == nil {
		return nil, nil
	}
	listen := o.dtls.listen
	if host, port, _ := net.SplitHostPort(listen); listen == o.listen && port == "0" {
		// The same port as TCP, also when --listen let the system pick
		// one: players give one HOST:PORT for both.
		if ta, ok := tcp.(*net.TCPAddr); ok {
			listen = net.JoinHostPort(host, fmt.Sprint(ta.Port))
		}
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
		return nil, err
	}
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		return nil, cli.WithHint(fmt.Errorf("listening on UDP %s: %w", listen, err),
			"is another server using the UDP port? choose another with --dtls-listen, e.g. --dtls-listen 127.0.0.1:4243")
	}
	d := &dtlsServer{srv: srv, addr: pc.LocalAddr(), errc: make(chan error, 1)}
	// As for TCP, Serve's context is never cancelled: Shutdown is the
	// graceful stop.
	go func() { d.errc <- srv.Serve(context.WithoutCancel(ctx), pc) }()
	return d, nil
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
