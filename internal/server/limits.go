package server

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/limits"
)

// Per-address limits, which Options and the logs call per-source (issue
// 7, handshake-CPU exhaustion): the table and what a source is are
// internal/limits', shared with the DTLS server. The TCP server applies
// them when it accepts a connection, before any handshake work: accept,
// look up, close.

// limitKeyOf returns the key a remote address counts against, and false
// when it is not an IP address (a listener wrapper's own kind of address):
// such connections are not limited per address.
func limitKeyOf(a net.Addr) (netip.Addr, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case nil:
		return netip.Addr{}, false
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.Addr{}, false
		}
	}
	return limits.Key(ap.Addr())
}

// newAddrLimits returns the table for resolved options, or nil when both
// limits are off.
func newAddrLimits(o Options) *limits.Table {
	return limits.New(limits.Options{MaxConns: o.SourceMaxConns, Rate: o.SourceHandshakeRate, Bound: o.MaxConns + limits.Spare})
}

// limitAddr counts c against the limits of its client's address, or
// returns the reason to refuse it, which it logs at
// most once a second for all addresses together.
func (s *Server) limitAddr(ctx context.Context, c *conn) string {
	if s.limits == nil {
		return ""
	}
	k, ok := limitKeyOf(c.remoteAddr())
	if !ok {
		return ""
	}
	var reason string
	switch s.limits.Admit(k, time.Now()) {
	case limits.Admitted:
		c.limitKey, c.limited = k, true
		return ""
	case limits.TooManyConns:
		reason = RefusedSourceConns
	default:
		reason = RefusedSourceRate
	}
	if ok, suppressed := s.limitLog.allow(time.Now()); ok {
		limit := slog.Int("source_max_conns", s.opts.SourceMaxConns)
		if reason == RefusedSourceRate {
			limit = slog.Float64("source_handshake_rate", s.opts.SourceHandshakeRate)
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "refusing connections: per-source limit",
			slog.String("source", limits.KeyString(k)), slog.String("reason", reason), limit, slog.Int("suppressed", suppressed))
	}
	return reason
}

// releaseLimit uncounts c from its address's limits, once.
func (s *Server) releaseLimit(c *conn) {
	if c.limited {
		c.limited = false
		s.limits.Release(c.limitKey)
	}
}
