package servercmd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// run serves until ctx is done (SIGINT, SIGTERM), then drains. It returns
// nil after a stop by ctx, graceful or cut at the shutdown timeout: the
// operator asked for it. Its steps, in order: the observer and the
// certificates (setUp), the listener (listen), the reloader (startReloads),
// serving until ctx ends (serve), and the drain (drain).
func run(ctx context.Context, stdout, stderr io.Writer, env *Env, o *options) error {
	level := new(slog.LevelVar)
	level.Set(o.logLevel)
	r := &instance{o: o, env: env, level: level, log: newLogger(stderr, o.logFormat, level), now: env.Now}
	if r.now == nil {
		r.now = time.Now
	}
	o.tokens = o.tokenPIN.Tokens(r.log)
	defer o.tokens.Close()
	takeTokenPINs(ctx, r.log, o)
	if o.check {
		return runCheck(stdout, o, r.now)
	}

	reload := env.Reload
	if reload == nil {
		// Caught from the start: SIGHUP's default action ends the
		// process, and a reload asked for during startup is served once
		// serve runs.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		reload = hup
	}
	defer func() { r.obs.stop() }() // set by setUp, if at all; nil-safe
	if err := r.setUp(ctx); err != nil {
		return err
	}
	if err := r.listen(); err != nil {
		return err
	}
	defer r.stopReloads(ctx)
	r.startReloads(ctx)
	return r.serve(ctx, stdout, reload)
}

// instance is one run of the server: what the steps of run build and
// hand on to the next.
type instance struct {
	o     *options
	env   *Env
	level *slog.LevelVar
	log   *slog.Logger
	now   func() time.Time

	// obs is nil without --metrics-listen; pc and dt without --dtls;
	// src, tickets, renewer and live with --plaintext. created lists the
	// files this start created, if any.
	obs     *observer
	src     *servedCert
	tickets *pki.TicketKeys
	renewer *pki.Renewer
	live    *liveCerts
	clients *liveClients // nil with --client-auth off
	created *pki.InitResult
	srv     *server.Server
	ln      net.Listener
	pc      net.PacketConn // nil without --dtls
	addr    net.Addr
	dt      *dtlsServer

	// hup asks the reloader for one reload; bg is the context of the
	// watchers and the reloader, stopBG ends it.
	hup    chan struct{}
	bg     context.Context
	stopBG context.CancelFunc

	reloader   sync.WaitGroup
	shutdownBy time.Time // set when the drain starts
}

// setUp starts the observer, creates the certificates on a first run,
// loads them, and builds the TCP server.
func (r *instance) setUp(ctx context.Context) error {
	o, log := r.o, r.log
	srvOpts := o.srv
	srvOpts.Logger = log
	if o.metricsListen != "" {
		// First: the Metrics must exist before the certificate source,
		// which reports its initial load from inside its constructor, and
		// the probes should answer (not ready) while the rest starts.
		obs, err := startObserver(ctx, log, r.env, o, r.now)
		if err != nil {
			return err
		}
		r.obs = obs
		srvOpts.Events = obs.m
	}
	if o.plaintext {
		log.WarnContext(ctx, "serving PLAINTEXT: nothing is encrypted and clients cannot check who they talk to; for comparison runs only, never for players")
	} else if err := r.setUpTLS(ctx, &srvOpts); err != nil {
		return err
	}
	srv, err := server.New(srvOpts)
	if err != nil {
		return err
	}
	r.srv = srv
	if r.clients != nil {
		r.clients.srv.Store(srv)
	}
	return nil
}

// setUpTLS loads the certificate and the ticket keys and sets the TLS
// configuration of srvOpts to serve them.
func (r *instance) setUpTLS(ctx context.Context, srvOpts *server.Options) error {
	o, log := r.o, r.log
	var err error
	if r.created, err = ensureCerts(ctx, o, r.now); err != nil {
		return err
	}
	if r.src, r.renewer, err = newServing(o, log, r.now, r.obs, false); err != nil {
		return err
	}
	if r.tickets, err = newTicketKeys(o, log, r.now); err != nil {
		return err
	}
	// Handshakes reach the pair and the ticket keys through live, so
	// that a SIGHUP with new paths in the configuration file can
	// replace them.
	r.live = &liveCerts{log: log}
	r.live.src.Store(r.src)
	r.live.tickets.Store(r.tickets)
	cfg, err := newTLSConfig(o.minTLS, o.groups, r.live.GetCertificate)
	if err != nil {
		return err
	}
	cfg.WrapSession, cfg.UnwrapSession = r.live.WrapSession, r.live.UnwrapSession
	if o.clients.auth != pinning.ClientAuthOff {
		c := &liveClients{log: log, onLoad: clientListMetrics(r.obs)}
		c.cut.Store(o.clients.revokeLive == "cut")
		v, err := newClientVerifier(o, log, c.onLoad, c.changed)
		if err != nil {
			return err
		}
		if err := checkClientCA(v, r.src.rl.State().Certificate, o); err != nil {
			return err
		}
		c.v.Store(v)
		// Any certificate is asked for and none is checked by crypto/tls:
		// the verifier decides, in VerifyConnection, which also runs on
		// resumed sessions.
		cfg.ClientAuth = tls.RequestClientCert
		cfg.VerifyConnection = c.VerifyConnection
		srvOpts.Identify = c.Identify
		r.clients = c
	}
	srvOpts.TLSConfig = cfg
	srvOpts.Keys = r.live.Keys
	return nil
}

// listen binds the TCP listener and, with --dtls, the UDP socket
// (listenGame).
func (r *instance) listen() error {
	ln, pc, err := listenGame(r.o, r.env.listenTCP)
	if err != nil {
		return err
	}
	r.ln, r.pc, r.addr = ln, pc, ln.Addr()
	return nil
}

// startReloads starts the watchers (certificate files, ticket keys,
// renewal) and the SIGHUP reloader. They run until the server has
// drained; [instance.stopReloads] stops them.
func (r *instance) startReloads(ctx context.Context) {
	o, log := r.o, r.log
	r.bg, r.stopBG = context.WithCancel(context.WithoutCancel(ctx))
	r.hup = make(chan struct{}, 1)
	if r.live != nil {
		r.live.bg = r.bg
		r.live.swapServed(r.src, r.renewer)
		r.live.swapTickets(r.tickets)
	}
	if r.clients != nil {
		r.clients.bg = r.bg
		r.clients.swap(r.clients.v.Load())
	}
	r.reloader.Go(func() {
		reloadOnSignal(r.bg, log, o, r.live, r.clients, r.hup, r.env.Reloaded, func() {
			// The configuration file first: it may name other files.
			rereadConfig(r.bg, log, o, r.level, r.live,
				func(o *options) (*servedCert, *pki.Renewer, error) { return newServing(o, log, r.now, r.obs, false) },
				func(o *options) (*pki.TicketKeys, error) { return newTicketKeys(o, log, r.now) })
			rereadClients(r.bg, log, o, r.clients)
		})
	})
}

// stopReloads stops the watchers and the reloader. Whatever they are
// doing (a reload waiting for another process's rotation lock, say), the
// process does not wait for them past --shutdown-timeout.
func (r *instance) stopReloads(ctx context.Context) {
	r.stopBG()
	if r.shutdownBy.IsZero() {
		r.shutdownBy = time.Now().Add(r.o.shutdownTimeout)
	}
	var all sync.WaitGroup
	all.Go(r.reloader.Wait)
	all.Go(r.live.stop)
	all.Go(r.clients.stop)
	if !waitUntil(&all, r.shutdownBy) {
		r.log.WarnContext(ctx, "a certificate reload was still running at --shutdown-timeout; exiting without waiting for it")
	}
}

// serve starts DTLS and the TCP server, says it is ready, and then
// forwards reload requests until ctx ends (then drains) or a server fails.
func (r *instance) serve(ctx context.Context, stdout io.Writer, reload <-chan os.Signal) error {
	o, log := r.o, r.log
	dt, err := startDTLS(ctx, log, o, r.src, r.obs, r.pc)
	if err != nil {
		r.ln.Close()
		return err
	}
	r.dt = dt

	// Serve gets a context that is never cancelled: cancelling Serve's
	// context closes every connection hard, and ctx ending is the start of
	// a graceful Shutdown instead.
	serveErr := make(chan error, 1)
	go func() { serveErr <- r.srv.Serve(context.WithoutCancel(ctx), r.ln) }()
	// Ready from here: the listener is bound (connections queue in its
	// backlog) and Serve accepts them. The "serving" record below comes
	// after, so whoever waits for it finds /readyz at 200.
	r.obs.setListening(true)
	var extra []any
	if r.clients != nil {
		extra = clientAttrs(o, r.clients.v.Load())
	}
	logStart(ctx, log, r.addr, o, r.src, r.obs, append(extra, dt.logAttrs(o)...)...)
	if r.created != nil {
		printCreated(stdout, r.created, r.addr)
	}
	if r.env.Listening != nil {
		r.env.Listening(r.addr)
	}
	if r.env.DTLSListening != nil && dt != nil {
		r.env.DTLSListening(dt.addr)
	}
	for {
		select {
		case err := <-serveErr:
			// Serve ends by itself only on a permanent accept error.
			return fmt.Errorf("accepting connections on %s: %w", r.addr, err)
		case err := <-dt.errs():
			return fmt.Errorf("serving DTLS on %s: %w", dt.addr, err)
		case <-reload:
			// The reload runs on its own goroutine, so that this loop
			// always hears SIGTERM; signals that arrive while one runs
			// make one more reload, not one each.
			select {
			case r.hup <- struct{}{}:
			default:
			}
		case <-ctx.Done():
			return r.drain(ctx, serveErr)
		}
	}
}

// drain stops both servers within --shutdown-timeout, letting the
// connections finish what they are doing.
func (r *instance) drain(ctx context.Context, serveErr <-chan error) error {
	log := r.log
	// Not ready first, so that a load balancer probing /readyz sends no
	// new players while the connections drain; the metrics listener goes
	// last, so the drain shows in it.
	r.obs.setListening(false)
	r.shutdownBy = time.Now().Add(r.o.shutdownTimeout)
	sctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), r.shutdownBy)
	dtlsDone := make(chan struct{})
	go func() { defer close(dtlsDone); r.dt.shutdown(sctx, log) }()
	err := r.srv.Shutdown(sctx)
	<-dtlsDone
	cancel()
	if err != nil {
		log.WarnContext(ctx, "stopped: the drain did not finish within --shutdown-timeout; the rest was cut", "shutdown_timeout", r.o.shutdownTimeout)
	}
	if err := <-serveErr; !errors.Is(err, server.ErrServerClosed) {
		return fmt.Errorf("serving on %s: %w", r.addr, err)
	}
	r.obs.stop()
	log.InfoContext(ctx, "stopped")
	return nil
}

// takeTokenPINs warns about each key URI that carries its PIN (pin-value)
// and moves the PIN into o.tokens, so that nothing the server logs or
// prints afterwards holds it.
func takeTokenPINs(ctx context.Context, log *slog.Logger, o *options) {
	for _, k := range []struct {
		flag string
		ref  *string
	}{{"--key", &o.key}, {"--next-key", &o.nextKey}, {"--ca-key", &o.caKey}} {
		if msg := cli.PINValueWarning(k.flag, *k.ref); msg != "" {
			log.WarnContext(ctx, msg)
		}
		*k.ref = o.tokens.TakePIN(*k.ref)
	}
}

// logStart logs what the server serves with: address, engine, TLS
// versions, the certificate's serial, expiry and pin, and the metrics
// listener's address.
func logStart(ctx context.Context, log *slog.Logger, addr net.Addr, o *options, src *servedCert, obs *observer, extra ...any) {
	attrs := []any{"addr", addr.String(), "engine", o.srv.Engine, "tls", src != nil}
	attrs = append(attrs, extra...)
	if obs != nil {
		attrs = append(attrs, "metrics_addr", obs.addr.String())
	}
	if src == nil {
		log.InfoContext(ctx, "serving", attrs...)
		return
	}
	attrs = append(attrs, "tls_min", tls.VersionName(o.minTLS), "tls_max", tls.VersionName(tls.VersionTLS13),
		"cert", o.cert, "key", o.key)
	if len(o.groups) > 0 {
		attrs = append(attrs, "groups", groupsValue{&o.groups}.String())
	}
	if w := tlsOnlyGroupsWarning(o.minTLS, o.groups); w != "" {
		log.WarnContext(ctx, w)
	}
	attrs = append(attrs, certAttrs(src.Info())...)
	log.InfoContext(ctx, "serving", attrs...)
}

func certAttrs(info certInfo) []any {
	attrs := []any{"serial", info.Serial, "not_after", info.NotAfter.UTC().Format(time.RFC3339), "pin", info.Pin.String()}
	if !info.NextPin.IsZero() {
		attrs = append(attrs, "next_pin", info.NextPin.String())
	}
	return attrs
}

// newServing loads the pair to serve (o.cert, o.key, o.nextKey) and makes
// the renewer that keeps it from expiring; neither runs until started. It
// is the one validation behind a start and --check, so that --check fails
// exactly when a start would (issue 12: a 0644 ca.key passed --check and
// failed the start). readOnly makes it write nothing: an interrupted
// rotation is then left for the start to complete (--check says so).
func newServing(o *options, log *slog.Logger, now func() time.Time, obs *observer, readOnly bool) (*servedCert, *pki.Renewer, error) {
	src, err := newServedCert(o, log, now, obs.metrics(), readOnly)
	if err != nil {
		return nil, nil, loadHint(err, o)
	}
	// It runs even with --auto-renew=false: it then only warns, 30 and 7
	// days before expiry and at expiry (the metric
	// spacecaptain_cert_not_after_timestamp_seconds is the other half of
	// that warning). With renewal on it loads the CA key now, so that a CA
	// key that could never renew fails here, not months later.
	renewer, err := pki.NewRenewer(pki.RenewerOptions{
		CertPath:      o.cert,
		KeyPath:       o.key,
		IssuerKeyPath: o.caKey,
		KeyPassphrase: o.pass.Source("the server key " + o.key),
		Tokens:        o.tokens,
		Disabled:      !o.autoRenew,
		// The source would notice the new file by itself; reloading at
		// once serves it without waiting for the debounce.
		OnRenew: func(*pki.RotateResult) { _ = src.Reload() },
		Logger:  log,
		Now:     now,
	})
	if err != nil {
		return nil, nil, loadHint(err, o)
	}
	return src, renewer, nil
}

// reloadOnSignal runs a reload each time hup fires (SIGHUP), until ctx
// ends: first reread (the configuration file, which may name other files),
// then the certificate and the ticket keys in force. The source logs what
// changed; a refusal is logged here, once per distinct reason, and the
// signals themselves at most once a second, so that a flood of SIGHUPs
// cannot flood the log (issue 12: 4,636 signals wrote 4,631 lines). done,
// when set, is called after each reload.
func reloadOnSignal(ctx context.Context, log *slog.Logger, o *options, live *liveCerts, clients *liveClients, hup <-chan struct{}, done func(), reread func()) {
	var (
		lastLog             time.Time
		unlogged            int
		lastCertErr, lastTK string
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		unlogged++
		if now := time.Now(); now.Sub(lastLog) >= time.Second {
			log.InfoContext(ctx, "reload requested", "signals", unlogged)
			lastLog, unlogged = now, 0
		}
		reread()
		if live == nil {
			log.DebugContext(ctx, "nothing to reload in plaintext")
		} else {
			if err := live.served().Reload(); err != nil {
				if err.Error() != lastCertErr {
					log.WarnContext(ctx, "reload failed; still serving the previous certificate", "err", err)
				}
				lastCertErr = err.Error()
			} else {
				lastCertErr = ""
			}
			if clients != nil {
				// The verifier logs and counts what it refused.
				_ = clients.v.Load().Reload()
			}
			if err := live.ticketKeys().Reload(); err != nil {
				if err.Error() != lastTK {
					log.WarnContext(ctx, "ticket keys not reloaded; keeping the ones in use", "path", o.ticketKeys, "err", err)
				}
				lastTK = err.Error()
			} else {
				lastTK = ""
			}
		}
		if done != nil {
			done()
		}
	}
}

// waitUntil waits for wg until deadline and reports whether wg finished.
func waitUntil(wg *sync.WaitGroup, deadline time.Time) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// newTicketKeys loads --ticket-keys, or starts in-memory keys.
func newTicketKeys(o *options, log *slog.Logger, now func() time.Time) (*pki.TicketKeys, error) {
	k, err := pki.NewTicketKeys(pki.TicketKeysOptions{File: o.ticketKeys, Rotation: o.ticketKeyRotation, RequirePrivateFile: true, Logger: log, Now: now})
	if err != nil {
		return nil, cli.WithHint(fmt.Errorf("loading --ticket-keys: %w", err),
			"make one with: sc-cert ticket-keys "+o.ticketKeys+" (or 64 random hex digits per line: openssl rand -hex 32 > FILE; chmod 600 FILE)")
	}
	return k, nil
}

// loadHint adds what to do to an error loading the pair to serve.
func loadHint(err error, o *options) error {
	var expired *pki.ExpiredError
	switch {
	case errors.As(err, &expired):
		return cli.WithHint(err, fmt.Sprintf("renew it on the same key (clients' pins stay valid): sc-cert rotate --cert %s --key %s", o.cert, o.key))
	case errors.Is(err, cli.ErrNoPassphrase):
		return &cli.Error{Code: cli.ExitFailure, Err: err,
			Hints: []string{"give it with --key-password-file FILE or the " + cli.PassphraseEnv + " environment variable"}}
	case errors.Is(err, pki.ErrIncorrectPassphrase):
		return cli.WithHint(err, "check --key-password-file or $"+cli.PassphraseEnv)
	case errors.Is(err, pki.ErrKeyFilePermissions):
		return cli.WithHint(err, fmt.Sprintf("make the file private (chmod 600); if others could read it, treat the key as leaked: docs/ROTATION.md, emergency replacement (a server key: sc-cert rotate --promote-next --cert %s --key %s; the CA key: sc-cert init --force)", o.cert, o.key))
	}
	return cli.TokenHint(err)
}
