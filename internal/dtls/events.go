package dtls

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// Events receives what happens on a DTLS server, for metrics. It has the
// method set of the TCP server's events (server.Events), so that one
// metrics implementation serves both transports; what the methods mean
// over UDP is said here.
//
// Implementations MUST be safe for concurrent use and cheap: they are
// called on the sessions' goroutines and on the goroutine that reads the
// socket. Embed [NopEvents] to implement only some methods.
type Events interface {
	// ConnAccepted is called when a client has returned its cookie (its
	// address is proved) and is counted against MaxSessions. Each
	// accepted session is later reported once by ConnClosed.
	ConnAccepted()
	// ConnRefused is called for a source turned away, with one of the
	// Refused… reasons; it is not reported to ConnAccepted or ConnClosed.
	ConnRefused(reason string)
	// ConnClosed is called when an accepted session ends, with one of the
	// Close… reasons.
	ConnClosed(reason string)
	// Handshake is called after every handshake of an accepted session.
	// state is what crypto/tls would report for it: Version is
	// tls.VersionTLS12 (DTLS 1.2 is TLS 1.2 over datagrams), CipherSuite
	// the suite's IANA number, DidResume false (the server keeps no
	// sessions to resume). A failed handshake's err is sorted by
	// [HandshakeResult].
	Handshake(state tls.ConnectionState, took time.Duration, err error)
	// Message is called for every request of a type the protocol defines,
	// after its reply has been built, as over TCP: took is the time since
	// the datagram that carried it was read.
	Message(t proto.Type, took time.Duration, bytesIn, bytesOut int)
	// ProtocolError is called for a request that broke the protocol, kind
	// a proto.ProtocolError Kind. Over UDP the session goes on: the
	// datagram is answered with an ERROR and the next one is read afresh.
	ProtocolError(kind string)
}

// The reasons given to [Events.ConnRefused]. The ones TCP has too are
// spelled the same, so that an alert on either transport reads alike.
const (
	// RefusedMaxSessions: the server holds MaxSessions sessions.
	RefusedMaxSessions = "max_conns"
	// RefusedShutdown: the server is shutting down.
	RefusedShutdown = "shutting_down"
	// RefusedSourceSessions: the source holds SourceMaxSessions sessions.
	RefusedSourceSessions = "source_conns"
	// RefusedSourceRate: the source began handshakes faster than
	// SourceHandshakeRate allows.
	RefusedSourceRate = "source_rate"
	// RefusedHalfOpen: a ClientHello dropped because its source already
	// had SourceMaxHalfOpen half-open handshakes or because the queue of
	// first ClientHellos waiting for a half-open was full, or a half-open
	// dropped to make room under MaxHalfOpen.
	RefusedHalfOpen = "half_open"
	// RefusedCookieTimeout: a source was sent a cookie and did not return
	// it within CookieTimeout: a spoofed address, or a lost datagram (the
	// client starts over).
	RefusedCookieTimeout = "cookie_timeout"
)

// The reasons given to [Events.ConnClosed]; those TCP has too are spelled
// the same.
const (
	// CloseEOF: the client closed the session with close_notify.
	CloseEOF = "eof"
	// CloseHandshakeError: the handshake failed.
	CloseHandshakeError = "handshake_error"
	// CloseHandshakeTimeout: it did not finish within HandshakeTimeout.
	CloseHandshakeTimeout = "handshake_timeout"
	// CloseIdleTimeout: no datagram from the client within IdleTimeout.
	CloseIdleTimeout = "idle_timeout"
	// CloseReadError and CloseWriteError: the session failed otherwise
	// (a fatal alert, the socket closed under it).
	CloseReadError  = "read_error"
	CloseWriteError = "write_error"
	// CloseShutdown: closed by Shutdown, with close_notify.
	CloseShutdown = "shutdown"
	// CloseForced: closed because Shutdown's context ended first.
	CloseForced = "forced"
)

// The results [HandshakeResult] sorts handshakes into: the values of the
// TCP handshake metric's result label that apply to DTLS.
const (
	ResultOK           = "ok"
	ResultTimeout      = "timeout"
	ResultClientClosed = "client_closed"
	ResultClientAlert  = "client_alert"
	ResultError        = "error"
)

// HandshakeResult sorts the error of a DTLS handshake for metrics: nil is
// ResultOK; a handshake that ran out of time (or was cut by a shutdown),
// ResultTimeout; one the client ended with an alert (typically because it
// rejected the certificate: a pin or CA mismatch), ResultClientAlert; one
// whose session was closed under it, ResultClientClosed; anything else,
// ResultError.
func HandshakeResult(err error) string {
	if err == nil {
		return ResultOK
	}
	// pion/dtls reports an alert received from the peer as an error with
	// this method (its unexported alertError).
	var alert interface{ IsFatalOrCloseNotify() bool }
	switch {
	case errors.As(err, &alert):
		return ResultClientAlert
	case errors.Is(err, context.DeadlineExceeded):
		return ResultTimeout
	case errors.Is(err, io.EOF), errors.Is(err, context.Canceled):
		return ResultClientClosed
	}
	var timeout interface{ Timeout() bool }
	if errors.As(err, &timeout) && timeout.Timeout() {
		return ResultTimeout
	}
	return ResultError
}

// NopEvents is an [Events] that does nothing.
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
