package servercmd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spf13/pflag"
)

// clientOptions are the client authentication flags.
type clientOptions struct {
	// auth is --client-auth. Default off.
	auth pinning.ClientAuth
	// ca, allow and revoked are --client-ca, --client-allow and
	// --client-revoked. Default "": none.
	ca, allow, revoked string
	// revokeLive is --revoke-live: "cut" closes the live sessions of a
	// client revoked while connected, "keep" leaves them. Default cut.
	revokeLive string
}

// clientFlags are the names of the client authentication flags.
var clientFlags = []string{"client-auth", "client-ca", "client-allow", "client-revoked", "revoke-live"}

func addClientFlags(fs *pflag.FlagSet, c *clientOptions) {
	fs.Var(clientAuthValue{&c.auth}, "client-auth", "client certificates: off (none asked for), optional (clients without one are anonymous) or require (`MODE`); a client that presents one must be admitted by --client-ca or --client-allow")
	fs.StringVar(&c.ca, "client-ca", "", "admit client certificates issued by the CA certificates in `FILE` with the clientAuth key usage (a CA for players, e.g. certs/client-ca.crt from sc-cert init --client-ca; never the CA that issues server certificates); reloaded on change")
	fs.StringVar(&c.allow, "client-allow", "", "admit the client keys whose pins `FILE` lists, one \"sha256//… [name=NAME] [comment]\" per line (sc-cert clients allow); reloaded on change")
	fs.StringVar(&c.revoked, "client-revoked", "", "refuse the client keys (sha256//…) and certificates (serial=HEX issuer=sha256//…) `FILE` lists, whatever admits them (sc-cert clients revoke); reloaded on change")
	fs.StringVar(&c.revokeLive, "revoke-live", "cut", "what a revocation does to the revoked client's live sessions (`WHAT`): cut (closed within a second of the reload) or keep (only new handshakes are refused)")
}

// clientListMetrics returns the verifier's OnLoad for the metrics, or
// nil without them.
func clientListMetrics(obs *observer) func(pinning.ClientListEvent) {
	m := obs.metrics()
	if m == nil {
		return nil
	}
	return func(ev pinning.ClientListEvent) { m.ClientListLoaded(ev.List, ev.Entries, ev.Err != nil) }
}

// rereadClients applies new client list paths, or a new --revoke-live,
// from a re-read configuration file (rereadConfig has put them in
// o.settings): a new verifier, loaded and checked before it replaces the
// one in force, whose revocations then cut live sessions. On failure the
// lists in force stay.
func rereadClients(ctx context.Context, log *slog.Logger, o *options, clients *liveClients) {
	s := o.settings
	if clients == nil || s == nil || s.file == "" {
		return
	}
	next := *o
	next.clients.ca, next.clients.allow, next.clients.revoked = s.values["client-ca"], s.values["client-allow"], s.values["client-revoked"]
	if v := s.values["revoke-live"]; v == "cut" || v == "keep" {
		if v != o.clients.revokeLive {
			o.clients.revokeLive = v
			clients.cut.Store(v == "cut")
			log.InfoContext(ctx, "configuration re-read", "path", s.file, "applied", []string{"revoke-live"})
		}
	}
	if next.clients.ca == o.clients.ca && next.clients.allow == o.clients.allow && next.clients.revoked == o.clients.revoked {
		return
	}
	restore := func() {
		s.values["client-ca"], s.values["client-allow"], s.values["client-revoked"] = o.clients.ca, o.clients.allow, o.clients.revoked
	}
	if err := next.validateClients(); err != nil {
		log.WarnContext(ctx, "new client list paths not used; the lists in force stay", "path", s.file, "err", err)
		restore()
		return
	}
	v, err := newClientVerifier(&next, log, clients.onLoad, clients.changed)
	if err != nil {
		log.WarnContext(ctx, "new client list paths not used; the lists in force stay", "path", s.file, "err", err)
		restore()
		return
	}
	clients.swap(v)
	o.clients = next.clients
	log.InfoContext(ctx, "configuration re-read", "path", s.file, "applied", []string{"client-ca", "client-allow", "client-revoked"},
		"client_ca", o.clients.ca, "client_allow", o.clients.allow, "client_revoked", o.clients.revoked)
	clients.cutRevoked()
}

// validateClients checks the client authentication flags.
func (o *options) validateClients() error {
	c := &o.clients
	if c.revokeLive != "cut" && c.revokeLive != "keep" {
		return cli.Usagef("--revoke-live %q: want cut or keep", c.revokeLive)
	}
	if c.auth == pinning.ClientAuthOff {
		for _, f := range []struct{ flag, v string }{{"--client-ca", c.ca}, {"--client-allow", c.allow}, {"--client-revoked", c.revoked}} {
			if f.v != "" {
				return cli.Usagef("%s is for client authentication: add --client-auth require (or optional)", f.flag)
			}
		}
		return nil
	}
	if o.plaintext {
		return cli.Usagef("--client-auth %v needs TLS: it can't be used with --plaintext", c.auth)
	}
	if o.dtls.enabled {
		// Not yet: the DTLS server would admit every client.
		return cli.Usagef("--client-auth %v is not supported with --dtls yet: DTLS clients would not be checked; serve DTLS from another instance without client authentication, or leave out --dtls", c.auth)
	}
	if c.ca == "" && c.allow == "" {
		return cli.Usagef("--client-auth %v admits clients by --client-ca FILE or --client-allow FILE, and neither is given: no client could be admitted", c.auth)
	}
	return nil
}

// clientAuthValue is the --client-auth flag.
type clientAuthValue struct{ m *pinning.ClientAuth }

func (v clientAuthValue) String() string { return v.m.String() }
func (v clientAuthValue) Set(s string) error {
	m, err := pinning.ParseClientAuth(s)
	if err != nil {
		return err
	}
	*v.m = m
	return nil
}
func (clientAuthValue) Type() string { return "mode" }

// liveClients is what handshakes check clients against: the client
// verifier in force, which a SIGHUP with new paths in the configuration
// file replaces. Its methods are safe for use as tls.Config and
// server.Options callbacks.
type liveClients struct {
	v       atomic.Pointer[pinning.ClientVerifier]
	srv     atomic.Pointer[server.Server]
	log     *slog.Logger
	cut     atomic.Bool // --revoke-live cut
	onLoad  func(pinning.ClientListEvent)
	bg      context.Context
	wg      sync.WaitGroup
	stopRun context.CancelFunc
}

// newClientVerifier loads the client lists of o.
func newClientVerifier(o *options, log *slog.Logger, onLoad func(pinning.ClientListEvent), onChange func([]string)) (*pinning.ClientVerifier, error) {
	v, err := pinning.NewClientVerifier(pinning.ClientVerifierOptions{
		Mode: o.clients.auth, CAFile: o.clients.ca, AllowFile: o.clients.allow, RevokedFile: o.clients.revoked,
		OnLoad: onLoad, OnChange: onChange, Logger: log,
	})
	if err != nil {
		return nil, cli.WithHint(fmt.Errorf("loading the client lists: %w", err),
			"make an allow list with: sc-cert clients allow PIN --name NAME --file FILE; a client CA with: sc-cert init --client-ca; an empty revoke list with: touch FILE")
	}
	return v, nil
}

// checkClientCA refuses a client CA that issued the certificate being
// served: every self-renewing server holds that CA's key, so one
// compromised server could mint players.
func checkClientCA(v *pinning.ClientVerifier, leaf *x509.Certificate, o *options) error {
	if v == nil || leaf == nil {
		return nil
	}
	for _, ca := range v.CACertificates() {
		if leaf.CheckSignatureFrom(ca) == nil || pinning.PinOf(ca).Equal(pinning.PinOf(leaf)) {
			return cli.WithHint(fmt.Errorf("--client-ca %s holds the CA that issued the server's certificate %s: a server that renews itself holds that CA's key, so one compromised server could mint players", o.clients.ca, o.cert),
				"make a CA for players only: sc-cert init --client-ca --dir "+filepath.Dir(o.cert)+" (client-ca.crt, client-ca.key), and give --client-ca its client-ca.crt")
		}
	}
	return nil
}

// VerifyConnection admits or refuses a client (tls.Config).
func (l *liveClients) VerifyConnection(cs tls.ConnectionState) error {
	return l.v.Load().VerifyConnection(cs)
}

// Identify names an admitted client (server.Options).
func (l *liveClients) Identify(cs tls.ConnectionState) server.Identity {
	id := l.v.Load().Identify(cs)
	if id.IsZero() {
		return server.Identity{}
	}
	return server.Identity{Pin: id.Pin.String(), Name: id.Name}
}

// changed is the verifier's OnChange: a new revoke list cuts the live
// sessions it revokes (--revoke-live cut).
func (l *liveClients) changed(lists []string) {
	if slices.Contains(lists, pinning.ListRevoked) {
		l.cutRevoked()
	}
}

// cutRevoked closes the live sessions of clients the lists in force
// revoke.
func (l *liveClients) cutRevoked() {
	srv := l.srv.Load()
	if !l.cut.Load() || srv == nil {
		return
	}
	v := l.v.Load()
	if n := srv.CloseClients(v.Revoked); n > 0 {
		l.log.Info("closed the live sessions of revoked clients", "connections", n)
	}
}

// swap puts v in force, follows its files from now on and stops following
// the previous one's.
func (l *liveClients) swap(v *pinning.ClientVerifier) {
	ctx, cancel := context.WithCancel(l.bg)
	l.v.Store(v)
	if l.stopRun != nil {
		l.stopRun()
	}
	l.stopRun = cancel
	l.wg.Go(func() {
		if err := v.Run(ctx); err != nil {
			l.log.ErrorContext(ctx, "the client list watcher stopped; restart the server to pick up new lists", "err", err)
		}
	})
}

// stop ends the watcher and waits for it.
func (l *liveClients) stop() {
	if l == nil || l.stopRun == nil {
		return
	}
	l.stopRun()
	l.wg.Wait()
}

// clientAttrs are the "serving" log line's client authentication
// attributes.
func clientAttrs(o *options, v *pinning.ClientVerifier) []any {
	if v == nil {
		return nil
	}
	allow, revoked := v.Sizes()
	attrs := []any{"client_auth", o.clients.auth.String()}
	if o.clients.ca != "" {
		attrs = append(attrs, "client_ca", o.clients.ca)
	}
	if o.clients.allow != "" {
		attrs = append(attrs, "client_allow", o.clients.allow, "client_allow_entries", allow)
	}
	if o.clients.revoked != "" {
		attrs = append(attrs, "client_revoked", o.clients.revoked, "client_revoked_entries", revoked)
	}
	return append(attrs, "revoke_live", o.clients.revokeLive)
}

// clientCheckLine describes client authentication, for --check.
func clientCheckLine(o *options, v *pinning.ClientVerifier) string {
	allow, revoked := v.Sizes()
	parts := []string{o.clients.auth.String()}
	if o.clients.ca != "" {
		parts = append(parts, fmt.Sprintf("client CA %s (%d certificates)", o.clients.ca, len(v.CACertificates())))
	}
	if o.clients.allow != "" {
		parts = append(parts, fmt.Sprintf("allow list %s (%d pins)", o.clients.allow, allow))
	}
	if o.clients.revoked != "" {
		parts = append(parts, fmt.Sprintf("revoke list %s (%d entries)", o.clients.revoked, revoked))
	}
	parts = append(parts, "revoked live sessions: "+o.clients.revokeLive)
	return strings.Join(parts, "; ")
}
