package servercmd

import (
	"context"
	"crypto/tls"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pki"
)

// liveCerts is what the TLS side serves from: the certificate source and
// the session-ticket keys in force, each with the goroutines that watch
// their files. A SIGHUP that finds new paths in the configuration file
// replaces them while the server runs; handshakes reach them only through
// the methods below, so they always see a complete pair. Safe for use as
// tls.Config callbacks; start, swap and stop are for the run loop alone.
type liveCerts struct {
	src     atomic.Pointer[servedCert]
	tickets atomic.Pointer[pki.TicketKeys]

	bg               context.Context
	log              *slog.Logger
	wg               sync.WaitGroup
	stopSrc, stopTic context.CancelFunc
}

// newLiveCerts serves src and tickets; their watchers (and renewer's) run
// under bg from now on.
func newLiveCerts(bg context.Context, log *slog.Logger, src *servedCert, renewer *pki.Renewer, tickets *pki.TicketKeys) *liveCerts {
	l := &liveCerts{bg: bg, log: log}
	l.swapServed(src, renewer)
	l.swapTickets(tickets)
	return l
}

// GetCertificate returns the pair being served.
func (l *liveCerts) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return l.src.Load().GetCertificate(hello)
}

// Keys returns the KEYS reply body of the pair being served.
func (l *liveCerts) Keys() []byte { return l.src.Load().Keys() }

// WrapSession seals a session ticket with the ticket keys in force.
func (l *liveCerts) WrapSession(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	return l.tickets.Load().WrapSession(cs, ss)
}

// UnwrapSession opens a session ticket with the ticket keys in force.
func (l *liveCerts) UnwrapSession(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	return l.tickets.Load().UnwrapSession(identity, cs)
}

// source returns the certificate source in force.
func (l *liveCerts) served() *servedCert { return l.src.Load() }

// ticketKeys returns the ticket keys in force.
func (l *liveCerts) ticketKeys() *pki.TicketKeys { return l.tickets.Load() }

// swapServed serves src from now on, starts its watcher and renewer's, and
// stops the previous ones.
func (l *liveCerts) swapServed(src *servedCert, renewer *pki.Renewer) {
	ctx, cancel := context.WithCancel(l.bg)
	l.src.Store(src)
	if l.stopSrc != nil {
		l.stopSrc()
	}
	l.stopSrc = cancel
	// Serving: the key-change guard may write its state file now.
	src.guard.start(ctx)
	l.run(ctx, src.Run, renewer.Run)
}

// swapTickets uses tickets from now on and stops the previous keys'
// watcher. Tickets sealed with the previous keys no longer open: those
// clients make a full handshake once.
func (l *liveCerts) swapTickets(tickets *pki.TicketKeys) {
	ctx, cancel := context.WithCancel(l.bg)
	l.tickets.Store(tickets)
	if l.stopTic != nil {
		l.stopTic()
	}
	l.stopTic = cancel
	l.run(ctx, tickets.Run)
}

func (l *liveCerts) run(ctx context.Context, fns ...func(context.Context) error) {
	for _, r := range fns {
		l.wg.Go(func() {
			if err := r(ctx); err != nil {
				l.log.ErrorContext(ctx, "a certificate watcher stopped; restart the server to pick up new files", "err", err)
			}
		})
	}
}

// stop ends every watcher and waits for them.
func (l *liveCerts) stop() {
	if l == nil {
		return
	}
	l.stopSrc()
	l.stopTic()
	l.wg.Wait()
}

// rereadConfig reads the configuration file again (SIGHUP) and applies
// what can change while the server runs: the log level, the certificate,
// key and next key paths (a new source, loaded and checked before it
// replaces the old one) and the ticket-key file. It logs what it applied
// and which changed settings wait for a restart. On any failure it keeps
// everything as it was and says why.
func rereadConfig(ctx context.Context, log *slog.Logger, o *options, level *slog.LevelVar, live *liveCerts, newCerts func(*options) (*servedCert, *pki.Renewer, error), newTickets func(*options) (*pki.TicketKeys, error)) {
	s := o.settings
	if s == nil || s.file == "" {
		return
	}
	r, err := s.reread()
	if err != nil {
		log.WarnContext(ctx, "configuration file not re-read; the settings in force stay", "path", s.file, "err", err)
		return
	}
	if len(r.restart) > 0 {
		log.WarnContext(ctx, "configuration changes need a restart to apply", "path", s.file, "settings", r.restart)
	}
	if len(r.apply) == 0 {
		return
	}
	applied := []string{}
	if v, ok := r.apply["log-level"]; ok {
		var l slog.Level
		if err := (levelValue{&l}).Set(v); err == nil {
			level.Set(l)
			o.logLevel = l
			applied = append(applied, "log-level")
		}
	}
	_, c := r.apply["cert"]
	_, k := r.apply["key"]
	_, n := r.apply["next-key"]
	if (c || k || n) && live != nil {
		next := *o
		next.cert, next.key, next.nextKey = s.values["cert"], s.values["key"], s.values["next-key"]
		if next.nextKey == "" && !pki.IsKeyURI(next.key) {
			next.nextKey = pki.NextKeyPath(next.key)
		}
		for _, k := range []struct {
			flag string
			ref  *string
		}{{"key", &next.key}, {"next-key", &next.nextKey}} {
			if msg := cli.PINValueWarning(s.file+": "+k.flag, *k.ref); msg != "" {
				log.WarnContext(ctx, msg)
			}
			*k.ref = o.tokens.TakePIN(*k.ref)
		}
		src, renewer, err := newCerts(&next)
		if err != nil {
			log.WarnContext(ctx, "new certificate paths not used; still serving the previous certificate", "path", s.file, "cert", next.cert, "key", next.key, "err", err)
			// Read again next time: the files may be fixed by then.
			for _, name := range []string{"cert", "key", "next-key"} {
				s.values[name] = map[string]string{"cert": o.cert, "key": o.key, "next-key": o.nextKey}[name]
			}
		} else {
			live.swapServed(src, renewer)
			o.cert, o.key, o.nextKey = next.cert, next.key, next.nextKey
			for _, name := range []string{"cert", "key", "next-key"} {
				if _, ok := r.apply[name]; ok {
					applied = append(applied, name)
				}
			}
		}
	}
	if v, ok := r.apply["ticket-keys"]; ok && live != nil {
		next := *o
		next.ticketKeys = v
		tk, err := newTickets(&next)
		if err != nil {
			log.WarnContext(ctx, "new ticket-key file not used; keeping the ticket keys in use", "path", s.file, "ticket_keys", v, "err", err)
			s.values["ticket-keys"] = o.ticketKeys
		} else {
			live.swapTickets(tk)
			o.ticketKeys = v
			applied = append(applied, "ticket-keys")
		}
	}
	if len(applied) > 0 {
		slices.Sort(applied)
		log.InfoContext(ctx, "configuration re-read", "path", s.file, "applied", applied)
	}
}
