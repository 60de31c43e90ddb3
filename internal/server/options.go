package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/limits"
	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// Defaults of [Options]; a zero field means its default.
const (
	DefaultMaxConns         = 10000
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultWriteTimeout     = 10 * time.Second

	// DefaultSourceMaxConns and DefaultSourceHandshakeRate are the
	// per-source limits (see Options.SourceMaxConns): generous enough for
	// a few hundred players behind one NAT address, low enough that one
	// address cannot hold a tenth of DefaultMaxConns or take more than a
	// fraction of a core in handshakes, even RSA-4096 ones (what a
	// handshake costs: docs/BENCHMARKS.md).
	DefaultSourceMaxConns      = limits.DefaultMaxConns
	DefaultSourceHandshakeRate = limits.DefaultRate

	// MaxMessageLimit is the largest MaxMessage New accepts: a connection
	// with work holds buffers of about twice MaxMessage.
	MaxMessageLimit = 16 << 20
)

// Options configures a [Server]. The zero value is a plaintext server with
// every default; set TLSConfig for TLS.
type Options struct {
	// TLSConfig is the TLS configuration; nil serves plaintext (for
	// comparison runs only). The certificate must come through
	// GetCertificate (or GetConfigForClient) with Certificates left empty:
	// clients that dial an IP address send no SNI, and crypto/tls hands
	// them Certificates[0] without calling GetCertificate, so they would
	// never see a rotated certificate. New refuses a config that sets
	// Certificates.
	//
	// The server uses this config itself, not a copy, and never changes
	// it. After New, the caller must not change it either (crypto/tls
	// reads it concurrently from every handshake), with one exception:
	// SetSessionTicketKeys, which crypto/tls makes safe to call on a live
	// config, so that session-ticket keys can be rotated (and shared by
	// several servers) while the server runs. Publish other changing state
	// through callbacks (GetCertificate, GetConfigForClient).
	//
	// Set DynamicRecordSizingDisabled: crypto/tls otherwise cuts the first
	// 128 KB a connection sends after being idle into records of about one
	// TCP segment, so a batch of pipelined replies would go out as many
	// records and many system calls instead of one. The server works
	// without it, only slower for pipelining clients.
	TLSConfig *tls.Config

	// Engine chooses how connections are driven, one of [Engines]. Empty
	// means the first of Engines, the best this platform has. Every engine
	// behaves the same.
	Engine string

	// MaxConns bounds the connections held at once, handshakes included.
	// Past it a new connection is closed at once (a plaintext one gets an
	// ERROR frame first), reported to Events.ConnRefused and logged at most
	// once a second. Zero means DefaultMaxConns (10,000); each connection
	// needs a file descriptor.
	MaxConns int

	// SourceMaxConns bounds the connections held at once from one source
	// — an IPv4 address, or an IPv6 /64, since an IPv6 host may use any
	// address of its /64 — handshakes included. Past it a new connection
	// from that source is closed at once, before any handshake work,
	// reported to Events.ConnRefused as RefusedSourceConns and logged at
	// most once a second. Zero means DefaultSourceMaxConns (1,000); a
	// negative value turns the limit off. Behind a PROXY protocol
	// balancer (ProxyProtocolFrom) the source is the client's address
	// from the header.
	SourceMaxConns int

	// SourceHandshakeRate bounds the new connections — each one a TLS
	// handshake, the server's most expensive work — a source may open,
	// per second, as a token bucket holding two seconds' worth (at least
	// one): a source that has been quiet may open 2×rate connections at
	// once, then rate a second. Past it a connection is closed at once,
	// before any handshake work, reported as RefusedSourceRate and logged
	// at most once a second. Zero means DefaultSourceHandshakeRate (50 a
	// second, a burst of 100); a negative value turns the limit off (for
	// load tests from one address).
	//
	// The server keeps an entry per source while it has connections or a
	// bucket that is not full, at most MaxConns+16,384 entries; past
	// that, sources with no connection are forgotten at random (their
	// buckets start full again). So the limits hold back one address, or
	// a few, not an attacker with many: MaxConns is the bound for that.
	SourceHandshakeRate float64

	// ProxyProtocolFrom lists the load balancers trusted to send the PROXY
	// protocol (versions 1 and 2, HAProxy's proxy-protocol.txt), by
	// address prefix (a single address is a /32 or /128). A connection
	// from one of them must begin with a PROXY protocol header, read on
	// the connection's goroutine under HandshakeTimeout (which then
	// bounds the header and the handshake together): the client's address
	// in it is what logs (remote_addr, with the balancer's as proxy_addr)
	// and the per-source limits see. A version 2 LOCAL command (the
	// balancer's own connection, e.g. a health check) or a version 1
	// UNKNOWN keeps the socket's address. A connection from a listed
	// address without a whole, well-formed header is closed, reported as
	// RefusedProxyHeader and logged at most once a second. Connections
	// from elsewhere are served as without this option: a PROXY header
	// from them is never honoured (it fails the TLS handshake). Empty, the
	// default, means no balancer is trusted.
	ProxyProtocolFrom []netip.Prefix

	// MaxMessage is the largest request body accepted, in bytes; a longer
	// one gets an ERROR reply and its connection is closed. Zero means
	// proto.DefaultMaxBody (4096, the original C server's); at most
	// MaxMessageLimit.
	MaxMessage int

	// HandshakeTimeout bounds the TLS handshake, from accept to done: a
	// client that sends nothing, or its ClientHello a byte a second, is
	// cut there. Zero means DefaultHandshakeTimeout (5 s).
	HandshakeTimeout time.Duration

	// IdleTimeout bounds the wait for the next request, and a request once
	// its first byte has come: it must be whole within IdleTimeout of that
	// byte, however slowly the rest comes. Zero means DefaultIdleTimeout (5
	// minutes). The goroutine engine refreshes read deadlines lazily, so a
	// connection may be cut up to IdleTimeout/16 early; the epoll engine
	// sweeps its deadlines, so a connection may be cut up to one sweep late
	// (see the package doc).
	IdleTimeout time.Duration

	// WriteTimeout bounds every write of replies: a client that does not
	// read them is cut then. It bounds crypto/tls's own writes too (the
	// answer to a KeyUpdate, written from inside a read), so a client that
	// asks for key updates and never reads is cut WriteTimeout after the
	// socket fills. The goroutine engine refreshes write deadlines lazily,
	// so a write may be cut up to WriteTimeout/16 early; the epoll engine
	// sweeps its deadlines. Zero means DefaultWriteTimeout (10 s).
	WriteTimeout time.Duration

	// Keys returns the body of a KEYS reply, built with proto.AppendKeys
	// (the current pin, then the next ones). It is called once per KEYS
	// request, concurrently, so it must be safe for concurrent use and
	// cheap: return a prepared slice (e.g. from an atomic.Pointer) that
	// nobody modifies. Nil means KEYS is not supported: clients get an
	// ERROR reply.
	Keys func() []byte

	// Identify names the client of a TLS connection once its handshake has
	// succeeded (the TLS config's VerifyConnection has admitted it), from
	// the connection state, which holds the certificate it presented. A
	// non-empty Identity.Pin appears in every log line about the
	// connection (client_pin, client_name) and as the last line of its
	// KEYS replies ("client PIN NAME"), and is what [Server.CloseClients]
	// reports. It is called once per handshake, resumed ones included, on
	// the connection's goroutine. Nil means every client is anonymous.
	Identify func(tls.ConnectionState) Identity

	// Logger receives the server's logs. Nil means slog.Default().
	Logger *slog.Logger

	// Events receives counts for metrics. Nil means none.
	Events Events

	// Now is the clock TIME replies report. Nil means time.Now.
	Now func() time.Time

	// KeepFreedMemory turns off the epoll engine's memory policy. A burst
	// of TLS handshakes leaves the Go heap with free pages that the
	// runtime returns to the operating system only slowly, about half the
	// resident memory of thousands of idle connections. So by default,
	// once at least 1,000 connections have entered the epoll engine's
	// loop since the last time and none has for a second, the engine
	// returns that memory at once (runtime/debug.FreeOSMemory: a full
	// garbage collection and a scavenge, on a goroutine of its own), at
	// most once every 10 seconds. That costs CPU in proportion to the live
	// heap (tens of milliseconds with 15,000 TLS connections held:
	// docs/BENCHMARKS.md) and affects the whole process. The goroutine
	// engine has no such policy.
	KeepFreedMemory bool
}

// Identity is who a TLS client proved to be with its certificate: the pin
// of its key ("sha256//…") and a name, both shown to people and to the
// client itself. Name must be free of white space and control characters
// (package pinning's SafeClientName makes one so). The zero Identity is
// an anonymous client.
type Identity struct {
	Pin, Name string
}

// resolve fills in the defaults and validates; it returns the first problem.
func (o Options) resolve() (Options, error) {
	engines := Engines()
	if o.Engine == "" {
		o.Engine = engines[0]
	}
	if !slices.Contains(engines, o.Engine) {
		return o, fmt.Errorf("unknown engine %q: this build has %s", o.Engine, strings.Join(engines, ", "))
	}
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.MaxConns < 0 {
		return o, fmt.Errorf("max conns %d is negative", o.MaxConns)
	}
	if o.SourceMaxConns == 0 {
		o.SourceMaxConns = DefaultSourceMaxConns
	}
	switch r := o.SourceHandshakeRate; {
	case r == 0:
		o.SourceHandshakeRate = DefaultSourceHandshakeRate
	case math.IsNaN(r) || math.IsInf(r, 0):
		return o, fmt.Errorf("source handshake rate %v is not a number of handshakes a second", r)
	}
	if len(o.ProxyProtocolFrom) > 0 {
		from := make([]netip.Prefix, len(o.ProxyProtocolFrom))
		for i, p := range o.ProxyProtocolFrom {
			if !p.IsValid() {
				return o, fmt.Errorf("proxy protocol source %d (%v) is not a valid address prefix", i+1, p)
			}
			// 10.0.0.1/8 means 10.0.0.0/8; an IPv4-mapped prefix means
			// the IPv4 one, as connections' addresses are unmapped
			// before the match.
			if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
			from[i] = p.Masked()
		}
		o.ProxyProtocolFrom = from
	}
	if o.MaxMessage == 0 {
		o.MaxMessage = proto.DefaultMaxBody
	}
	if o.MaxMessage < 0 || o.MaxMessage > MaxMessageLimit {
		return o, fmt.Errorf("max message %d is out of range: want 1 to %d bytes", o.MaxMessage, MaxMessageLimit)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"handshake timeout", &o.HandshakeTimeout, DefaultHandshakeTimeout},
		{"idle timeout", &o.IdleTimeout, DefaultIdleTimeout},
		{"write timeout", &o.WriteTimeout, DefaultWriteTimeout},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			return o, fmt.Errorf("%s %v is negative: a server without it can be held open by any client", d.name, *d.v)
		}
	}
	if o.TLSConfig != nil {
		if len(o.TLSConfig.Certificates) > 0 {
			return o, errors.New("tls config sets Certificates: clients that dial an IP send no SNI and would never see a rotated certificate; give the certificate through GetCertificate instead")
		}
		if o.TLSConfig.GetCertificate == nil && o.TLSConfig.GetConfigForClient == nil {
			return o, errors.New("tls config has no certificate: set GetCertificate")
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}
