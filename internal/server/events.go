package server

import (
	"crypto/tls"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// Events receives what happens on a server, for metrics. Every engine calls
// the same methods in the same situations.
//
// Implementations MUST be safe for concurrent use and cheap: they are
// called on the connection's own goroutine, on the hot path (Message once
// per request), and the server waits for them. Embed [NopEvents] to
// implement only some methods and keep compiling when methods are added.
type Events interface {
	// ConnAccepted is called when a connection is accepted and counted
	// against MaxConns, before its handshake. Each accepted connection is
	// later reported once by ConnClosed.
	ConnAccepted()
	// ConnRefused is called for a connection closed at once without being
	// served; reason is one of the Refused… constants. It is not reported
	// to ConnAccepted or ConnClosed.
	ConnRefused(reason string)
	// ConnClosed is called when an accepted connection is closed; reason is
	// one of the Close… constants.
	ConnClosed(reason string)
	// Handshake is called after every TLS handshake with its result, how
	// long it took, and the connection state (partial when err is not nil;
	// state.DidResume tells a resumed session from a full handshake).
	Handshake(state tls.ConnectionState, took time.Duration, err error)
	// Message is called for every request of a type the protocol defines,
	// after its reply has been built: t is the request's type (the reply
	// may still be an ERROR, as for KEYS on a server without pins), took
	// its latency inside the server, bytesIn and bytesOut the frame sizes,
	// headers included. Requests of other types go to ProtocolError with
	// [proto.KindUnknownType] instead, so that t stays a bounded label.
	//
	// took runs from the moment the server began answering the batch of
	// requests that held this one (just after the read that brought it)
	// to the moment its reply was built. The clock is read once per 16
	// requests of a batch, not per request, so a request may be reported
	// up to 15 requests' work late. For a client that waits for each
	// reply, took is the time to build its reply; for one that pipelines,
	// it includes the requests ahead of it in the same batch. Network
	// time, time in socket buffers and the write of the replies are not
	// included. Calls for one batch may come after a ProtocolError of a
	// later request in it.
	Message(t proto.Type, took time.Duration, bytesIn, bytesOut int)
	// ProtocolError is called for input that breaks the protocol; kind is
	// a [proto.ProtocolError] Kind ("too_large", "truncated",
	// "unknown_type").
	ProtocolError(kind string)
}

// The reasons given to [Events.ConnRefused].
const (
	// RefusedMaxConns: the server already holds MaxConns connections.
	RefusedMaxConns = "max_conns"
	// RefusedShutdown: the connection was accepted while the server was
	// shutting down.
	RefusedShutdown = "shutting_down"
	// RefusedSourceConns: its source (IPv4 address or IPv6 /64) already
	// holds SourceMaxConns connections.
	RefusedSourceConns = "source_conns"
	// RefusedSourceRate: its source opened more connections than
	// SourceHandshakeRate allows.
	RefusedSourceRate = "source_rate"
	// RefusedProxyHeader: the connection came from a trusted balancer
	// (ProxyProtocolFrom) and did not begin with a whole, well-formed
	// PROXY protocol header within HandshakeTimeout.
	RefusedProxyHeader = "proxy_header"
)

// The reasons given to [Events.ConnClosed], also logged as "reason".
const (
	// CloseEOF: the client closed the connection between requests.
	CloseEOF = "eof"
	// CloseHandshakeError: the TLS handshake failed (garbage, a plaintext
	// client on the TLS port, no shared version or suite, a bad
	// certificate alert).
	CloseHandshakeError = "handshake_error"
	// CloseHandshakeTimeout: the handshake did not finish within
	// HandshakeTimeout.
	CloseHandshakeTimeout = "handshake_timeout"
	// CloseIdleTimeout: no request, or no rest of a started one, within
	// IdleTimeout.
	CloseIdleTimeout = "idle_timeout"
	// CloseWriteTimeout: the client did not take a reply within
	// WriteTimeout (typically a client that sends but never reads) — or,
	// on the epoll engine, left more unsent than the connection's output
	// bound.
	CloseWriteTimeout = "write_timeout"
	// CloseProtocolError: framing was lost (a length over MaxMessage, or a
	// frame cut short by the end of the stream).
	CloseProtocolError = "protocol_error"
	// CloseReadError and CloseWriteError: the network failed otherwise
	// (e.g. a reset).
	CloseReadError  = "read_error"
	CloseWriteError = "write_error"
	// CloseShutdown: closed gracefully by Shutdown, with close_notify.
	CloseShutdown = "shutdown"
	// CloseForced: closed hard because Shutdown's context ended, or
	// Serve's did, before the connection had drained.
	CloseForced = "forced"
	// CloseRevoked: closed hard by [Server.CloseClients], because its
	// client's identity was revoked.
	CloseRevoked = "revoked"
)

// NopEvents is an [Events] that does nothing. Embed it in an implementation
// that needs only some of the methods.
type NopEvents struct{}

// ConnAccepted does nothing.
func (NopEvents) ConnAccepted() {}

// ConnRefused does nothing.
func (NopEvents) ConnRefused(string) {}

// ConnClosed does nothing.
func (NopEvents) ConnClosed(string) {}

// Handshake does nothing.
func (NopEvents) Handshake(tls.ConnectionState, time.Duration, error) {}

// Message does nothing.
func (NopEvents) Message(proto.Type, time.Duration, int, int) {}

// ProtocolError does nothing.
func (NopEvents) ProtocolError(string) {}
