package dtls

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/limits"
	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// Defaults of [Options]; a zero field means its default.
const (
	// DefaultMaxSessions bounds the sessions held at once, as
	// server.DefaultMaxConns bounds TCP connections.
	DefaultMaxSessions = 10000
	// DefaultHandshakeTimeout bounds a handshake, from the ClientHello
	// that returned the cookie to the Finished messages, as over TCP.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultIdleTimeout is the game's inactivity timeout: a session with
	// no datagram from its client for this long is closed, since UDP has
	// no FIN to tell a vanished client from a quiet one.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultCookieTimeout is how long a source that was sent a cookie
	// (HelloVerifyRequest) has to send it back before its half-open
	// handshake is dropped. A client on the far side of the world answers
	// in well under a second; RFC 6347's first retransmission comes after
	// one second, and starts over if it finds the half-open gone.
	DefaultCookieTimeout = 2 * time.Second
	// DefaultMaxHalfOpen bounds the half-open handshakes — sources that
	// were sent a cookie and have not returned it — held at once. Past it
	// the oldest is dropped to make room, so that a flood of spoofed
	// ClientHellos cannot hold more than this many, and a real player
	// whose cookie comes back before the flood has pushed its half-open
	// out (MaxHalfOpen / flood rate) still gets in.
	DefaultMaxHalfOpen = 1024
	// DefaultSourceMaxHalfOpen bounds the half-open handshakes of one
	// source (an IPv4 address, an IPv6 /64): enough for the players
	// behind one NAT address starting at once.
	DefaultSourceMaxHalfOpen = 16
	// DefaultSourceMaxSessions and DefaultSourceHandshakeRate are the
	// per-source limits, applied once the source has proved its address
	// by returning its cookie; the same values as over TCP.
	DefaultSourceMaxSessions   = limits.DefaultMaxConns
	DefaultSourceHandshakeRate = limits.DefaultRate
	// DefaultMaxDatagram is the largest datagram payload a batch of
	// replies is packed into: 1,200 bytes of frames plus the record's
	// overhead (13-byte header, an 8-byte connection ID, 24 bytes of AEAD
	// nonce and tag) stays under 1,280, IPv6's minimum MTU, so a batch is
	// never IP-fragmented. A single frame larger than this goes alone in
	// one record, and is IP-fragmented on the way.
	DefaultMaxDatagram = 1200
	// MinMaxDatagram is the smallest MaxDatagram New accepts: room for a
	// header and a short body.
	MinMaxDatagram = 256
	// MaxMaxDatagram is the largest: a DTLS record carries at most 16 KiB
	// of plaintext (RFC 6347, section 4.1), and a frame must fit in one.
	MaxMaxDatagram = 16 << 10
	// ConnectionIDLength is the length of the connection IDs the server
	// gives its clients (RFC 9146): 8 random bytes, so that a spoofed
	// record cannot guess another session's.
	ConnectionIDLength = 8
)

// Options configures a [Server]. The zero value is not usable:
// GetCertificate is required; every other zero field means its default.
type Options struct {
	// GetCertificate returns the certificate to present, called once per
	// handshake after the client has returned its cookie (so a spoofed
	// ClientHello never reaches it). Required. It has crypto/tls's
	// signature so that a hot-reloading source (pki.CertReloader's
	// GetCertificate) serves both transports: every reload reaches the
	// next DTLS handshake. The ClientHelloInfo carries the ServerName and
	// the cipher suites offered; its Conn is nil.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)

	// Keys returns the body of a KEYS reply, as server.Options.Keys. Nil
	// means KEYS is not supported.
	Keys func() []byte

	// MaxSessions bounds the sessions held at once, counted from the
	// moment a client returns its cookie. Past it a new client is
	// refused (its handshake is dropped) and reported as
	// [RefusedMaxSessions]. Zero means DefaultMaxSessions.
	MaxSessions int

	// MaxHalfOpen bounds the half-open handshakes, sources sent a cookie
	// that have not yet returned it. Past it the oldest is dropped. Zero
	// means DefaultMaxHalfOpen.
	MaxHalfOpen int

	// SourceMaxHalfOpen bounds one source's half-open handshakes; a
	// ClientHello past it is dropped unanswered. Zero means
	// DefaultSourceMaxHalfOpen; a negative value turns it off (MaxHalfOpen
	// still holds), for load tests from one address.
	SourceMaxHalfOpen int

	// SourceMaxSessions bounds the sessions of one source (an IPv4
	// address, an IPv6 /64), counted once the source has returned its
	// cookie, so that a spoofed address never counts against a real one.
	// Zero means DefaultSourceMaxSessions; a negative value turns it off.
	SourceMaxSessions int

	// SourceHandshakeRate bounds the handshakes per second of one source,
	// as a token bucket of two seconds' worth, counted once the source has
	// returned its cookie. Zero means DefaultSourceHandshakeRate; a
	// negative value turns it off.
	SourceHandshakeRate float64

	// MaxMessage is the largest request body accepted, in bytes, as
	// server.Options.MaxMessage. Zero means proto.DefaultMaxBody (4096).
	// At most MaxMaxDatagram less a header: a frame travels in one record.
	MaxMessage int

	// MaxDatagram is the largest datagram payload a batch of replies is
	// packed into; a batch larger than this is split at frame boundaries
	// into several datagrams. Zero means DefaultMaxDatagram (1200).
	MaxDatagram int

	// HandshakeTimeout bounds a handshake from the ClientHello that
	// returned the cookie to its end (checked every 100 ms at most, as
	// CookieTimeout is). Zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// CookieTimeout bounds the wait for a source to return its cookie.
	// Zero means DefaultCookieTimeout.
	CookieTimeout time.Duration

	// IdleTimeout closes a session whose client has sent no application
	// data (requests) for this long; datagrams that do not decrypt do not
	// count, so a spoofer cannot keep a vanished player's session alive.
	// Sessions are checked every IdleTimeout/16, so one is closed within
	// a sixteenth more. Zero means DefaultIdleTimeout (30 s).
	IdleTimeout time.Duration

	// DisableConnectionIDs turns off connection IDs (RFC 9146). By
	// default the server asks every client that supports them to send an
	// 8-byte connection ID in its records, and follows a client whose
	// address changes (a NAT rebinding) once a return routability check
	// (RFC 9853) has shown the new address reaches it.
	DisableConnectionIDs bool

	// Logger receives the server's logs. Nil means slog.Default().
	Logger *slog.Logger

	// Events receives counts for metrics. Nil means none.
	Events Events

	// Now is the clock TIME replies report. Nil means time.Now.
	Now func() time.Time
}

// resolve fills in the defaults and validates; it returns the first problem.
func (o Options) resolve() (Options, error) {
	if o.GetCertificate == nil {
		return o, errors.New("no certificate: set GetCertificate")
	}
	for _, v := range []struct {
		name string
		v    *int
		def  int
	}{
		{"max sessions", &o.MaxSessions, DefaultMaxSessions},
		{"max half-open", &o.MaxHalfOpen, DefaultMaxHalfOpen},
		{"max datagram", &o.MaxDatagram, DefaultMaxDatagram},
		{"max message", &o.MaxMessage, proto.DefaultMaxBody},
	} {
		if *v.v == 0 {
			*v.v = v.def
		}
		if *v.v < 0 {
			return o, fmt.Errorf("%s %d is negative", v.name, *v.v)
		}
	}
	if o.MaxDatagram < MinMaxDatagram || o.MaxDatagram > MaxMaxDatagram {
		return o, fmt.Errorf("max datagram %d is out of range: want %d to %d bytes", o.MaxDatagram, MinMaxDatagram, MaxMaxDatagram)
	}
	if o.MaxMessage > MaxMaxDatagram-proto.HeaderSize {
		return o, fmt.Errorf("max message %d is over %d bytes: a frame must fit in one DTLS record", o.MaxMessage, MaxMaxDatagram-proto.HeaderSize)
	}
	switch {
	case o.SourceMaxHalfOpen == 0:
		o.SourceMaxHalfOpen = DefaultSourceMaxHalfOpen
	case o.SourceMaxHalfOpen < 0:
		o.SourceMaxHalfOpen = o.MaxHalfOpen
	}
	if o.SourceMaxSessions == 0 {
		o.SourceMaxSessions = DefaultSourceMaxSessions
	}
	switch r := o.SourceHandshakeRate; {
	case r == 0:
		o.SourceHandshakeRate = DefaultSourceHandshakeRate
	case math.IsNaN(r) || math.IsInf(r, 0):
		return o, fmt.Errorf("source handshake rate %v is not a number of handshakes a second", r)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"handshake timeout", &o.HandshakeTimeout, DefaultHandshakeTimeout},
		{"cookie timeout", &o.CookieTimeout, DefaultCookieTimeout},
		{"idle timeout", &o.IdleTimeout, DefaultIdleTimeout},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			return o, fmt.Errorf("%s %v is negative", d.name, *d.v)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Events == nil {
		o.Events = NopEvents{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}
