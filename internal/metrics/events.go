package metrics

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/pinning"
)

var _ server.Events = (*Metrics)(nil)

// ConnAccepted counts an accepted connection; part of [server.Events].
func (m *Metrics) ConnAccepted() {
	m.open.Add(1)
	m.accepted.Inc()
}

// ConnRefused counts a connection refused for reason; part of
// [server.Events].
func (m *Metrics) ConnRefused(reason string) { m.refused.inc(reason) }

// ConnClosed counts an accepted connection closed for reason; part of
// [server.Events].
func (m *Metrics) ConnClosed(reason string) {
	m.open.Add(-1)
	m.closed.inc(reason)
}

// ProtocolError counts input that broke the protocol, by kind; part of
// [server.Events].
func (m *Metrics) ProtocolError(kind string) { m.protoErr.inc(kind) }

// Message counts one answered request: its type, the time its reply took
// to build, and the frame sizes; part of [server.Events]. It is called
// once per request and costs four atomic updates.
func (m *Metrics) Message(t proto.Type, took time.Duration, bytesIn, bytesOut int) {
	if int(t) >= len(m.requests) {
		// A request type added to package proto after this was written.
		m.messageSlow(t, took, bytesIn, bytesOut)
		return
	}
	r := &m.requests[t]
	r.count.Inc()
	r.duration.Observe(took.Seconds())
	r.in.Add(float64(bytesIn))
	r.out.Add(float64(bytesOut))
}

func (m *Metrics) messageSlow(t proto.Type, took time.Duration, bytesIn, bytesOut int) {
	rv := &m.requestVecs
	name := typeLabel(t)
	rv.count.WithLabelValues(name).Inc()
	rv.duration.WithLabelValues(name).Observe(took.Seconds())
	rv.in.WithLabelValues(name).Add(float64(bytesIn))
	rv.out.WithLabelValues(name).Add(float64(bytesOut))
}

// Handshake counts a TLS handshake by result, TLS version and resumption,
// and observes the duration of a successful one; part of [server.Events].
func (m *Metrics) Handshake(state tls.ConnectionState, took time.Duration, err error) {
	r := handshakeResult(err)
	m.handshakeCounter(r, versionIndex(state.Version), state.DidResume).Inc()
	if r == resultOK {
		m.hsDuration[b2i(state.DidResume)].Observe(took.Seconds())
	}
}

// handshakeCounter returns the child of the handshake counter for the
// labels, resolving it on first use. Two goroutines may both resolve it;
// the vector gives them the same child.
func (m *Metrics) handshakeCounter(r, v int, resumed bool) prometheus.Counter {
	p := &m.hsCache[r][v][b2i(resumed)]
	if ref := p.Load(); ref != nil {
		return ref.c
	}
	c := m.handshakes.WithLabelValues(resultNames[r], versionNames[v], boolNames[b2i(resumed)])
	p.Store(&counterRef{c})
	return c
}

// The handshake results, indexes into resultNames.
const (
	resultOK = iota
	resultTimeout
	resultClientClosed
	resultNotTLS
	resultClientAlert
	resultError
	resultKeyUnavailable
	resultNoClientCert
	resultUnknownClient
	resultClientRevoked
	resultClientCertExpired
	resultBadClientChain
	numResults
)

var resultNames = [numResults]string{HandshakeOK, HandshakeTimeout, HandshakeClientClosed, HandshakeNotTLS, HandshakeClientAlert, HandshakeError, HandshakeKeyUnavailable,
	pinning.RefusedNoClientCert, pinning.RefusedUnknownClient, pinning.RefusedClientRevoked, pinning.RefusedClientCertExpired, pinning.RefusedBadClientChain}

// refusalResult returns the result of a client refused for reason, one
// of package pinning's ClientRefusalReasons; a reason added there and not
// here counts as an error.
func refusalResult(reason string) int {
	for r := resultNoClientCert; r < numResults; r++ {
		if resultNames[r] == reason {
			return r
		}
	}
	return resultError
}

// signFailed starts the error crypto/tls returns when the certificate's
// private key fails to sign (handshake_server_tls13.go, key_agreement.go:
// "tls: failed to sign handshake: ", "tls: failed to sign ECDHE
// parameters: "). crypto/tls flattens the signer's error into that text,
// so the text is all there is to go by; TestHandshakeResultSignFailure
// checks it against the real crypto/tls, TLS 1.2 and 1.3.
const signFailed = "tls: failed to sign "

// handshakeResult sorts a handshake error into a result. It looks at
// crypto/tls's error types, not its messages, which change between Go
// releases, and walks the chain itself rather than with errors.As, whose
// targets would escape to the heap: three allocations per failed
// handshake.
func handshakeResult(err error) int {
	if err == nil {
		return resultOK
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch x := e.(type) {
		case interface{ RefusalReason() string }:
			// The server's VerifyConnection refused the client
			// (package pinning's ClientError).
			return refusalResult(x.RefusalReason())
		case *net.OpError:
			// crypto/tls reports an alert the peer sent as a *net.OpError
			// whose Op is "remote error" (conn.go, readRecordOrCCS); the
			// alert type itself is unexported, and tls.AlertError is used
			// only by QUIC.
			if x.Op == "remote error" {
				return resultClientAlert
			}
		case tls.RecordHeaderError, *tls.RecordHeaderError:
			return resultNotTLS
		}
		if t, ok := e.(interface{ Timeout() bool }); ok && t.Timeout() {
			return resultTimeout
		}
		if e == io.EOF || e == io.ErrUnexpectedEOF || e == error(syscall.ECONNRESET) {
			return resultClientClosed
		}
	}
	if strings.HasPrefix(err.Error(), signFailed) {
		return resultKeyUnavailable
	}
	return resultError
}

// The TLS versions, indexes into versionNames.
const (
	versionUnknown = iota
	version10
	version11
	version12
	version13
	numVersions
)

var versionNames = [numVersions]string{"unknown", "1.0", "1.1", "1.2", "1.3"}

func versionIndex(v uint16) int {
	switch v {
	case tls.VersionTLS10:
		return version10
	case tls.VersionTLS11:
		return version11
	case tls.VersionTLS12:
		return version12
	case tls.VersionTLS13:
		return version13
	}
	return versionUnknown
}

var boolNames = [2]string{"false", "true"}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
