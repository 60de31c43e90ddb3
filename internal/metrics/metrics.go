package metrics

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/server"
)

// The names of the metrics, stable: dashboards and alerts depend on them.
// doc.go describes each one.
const (
	NameConnectionsOpen     = "spacecaptain_connections_open"
	NameConnectionsMax      = "spacecaptain_connections_max"
	NameConnectionsAccepted = "spacecaptain_connections_accepted_total"
	NameConnectionsRefused  = "spacecaptain_connections_refused_total"
	NameConnectionsClosed   = "spacecaptain_connections_closed_total"

	NameHandshakes        = "spacecaptain_tls_handshakes_total"
	NameHandshakeDuration = "spacecaptain_tls_handshake_duration_seconds"

	NameRequests        = "spacecaptain_requests_total"
	NameRequestDuration = "spacecaptain_request_duration_seconds"
	NameRequestBytes    = "spacecaptain_request_bytes_total"
	NameReplyBytes      = "spacecaptain_reply_bytes_total"
	NameProtocolErrors  = "spacecaptain_protocol_errors_total"

	NameCertNotAfter          = "spacecaptain_cert_not_after_timestamp_seconds"
	NameCertNotBefore         = "spacecaptain_cert_not_before_timestamp_seconds"
	NameCertInfo              = "spacecaptain_cert_info"
	NameCertReloads           = "spacecaptain_cert_reloads_total"
	NameCertLastReloadSuccess = "spacecaptain_cert_last_reload_success_timestamp_seconds"
	NameUnannouncedKeyChanges = "spacecaptain_unannounced_key_changes_total"
)

// The values of the handshake counter's result label.
const (
	// HandshakeOK: the handshake completed.
	HandshakeOK = "ok"
	// HandshakeTimeout: it did not complete within the server's
	// HandshakeTimeout (also a handshake cut by a graceful shutdown, which
	// the goroutine engine ends with an expired deadline).
	HandshakeTimeout = "timeout"
	// HandshakeClientClosed: the client closed or reset the connection
	// mid-handshake, as port scanners and TCP health checks do.
	HandshakeClientClosed = "client_closed"
	// HandshakeNotTLS: the first bytes were not a TLS record: a plaintext
	// client (or an HTTP request) on the TLS port.
	HandshakeNotTLS = "not_tls"
	// HandshakeClientAlert: the client aborted with a TLS alert, typically
	// because it rejected the certificate (bad_certificate, unknown_ca: a
	// pin or CA mismatch after a rotation shows up here first).
	HandshakeClientAlert = "client_alert"
	// HandshakeError: any other failure, e.g. no TLS version, cipher suite
	// or group in common, or a malformed ClientHello.
	HandshakeError = "error"
	// HandshakeKeyUnavailable: the server's own key failed to sign, as a
	// key in a PKCS#11 token does when the token is removed or its module
	// fails. The server keeps running; every full handshake fails until
	// the token answers again.
	HandshakeKeyUnavailable = "key_unavailable"
)

// The values of the request metrics' type label: the request types of
// package proto, lowercase.
const (
	TypeEcho    = "echo"
	TypeReverse = "reverse"
	TypeTime    = "time"
	TypeKeys    = "keys"
)

// The values of the reload counter's result label; they are the words of
// pki.ReloadResult, so that the CLI can pass string(event.Result).
const (
	// ReloadChanged: a new certificate is being served.
	ReloadChanged = "changed"
	// ReloadUnchanged: the files hold what is already served.
	ReloadUnchanged = "unchanged"
	// ReloadFailed: the files changed but were refused; the old
	// certificate is still served. The CLI does not pass a refusal that
	// the certificate source will look at again (pki.ReloadEvent.Recheck).
	ReloadFailed = "failed"
)

// Histogram buckets, in seconds. They are part of the metrics' stable
// definition (doc.go): changing them breaks quantiles across the change.
// Never modified.
var (
	// handshakeBuckets spans a loopback resumption (~0.3 ms) to the
	// default handshake timeout (5 s); a full P-256 handshake on a LAN is
	// 1 to 5 ms, over the internet one or two round trips more.
	handshakeBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
	// requestBuckets spans a request's latency inside the server: under a
	// microsecond for a short ECHO, tens of microseconds for a 4 KiB
	// REVERSE or the last of a long pipelined batch; anything near a
	// millisecond means the server is starved of CPU.
	requestBuckets = []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 1e-2, 0.1}
)

// Options configures [New]. The zero value is usable.
type Options struct {
	// MaxConns is the server's connection limit, exported as
	// spacecaptain_connections_max so that alerts can compare
	// spacecaptain_connections_open with it. Zero leaves that metric out.
	MaxConns int

	// OmitRuntime leaves out the Go runtime (go_*) and process
	// (process_*: CPU, memory, open file descriptors against their limit)
	// metrics. Default false: they are included, because a server that
	// holds thousands of connections is limited by exactly those.
	OmitRuntime bool

	// DTLS adds the DTLS server's series ([Metrics.DTLS]), with the
	// label transport="dtls". Default false: no DTLS series.
	DTLS bool

	// DTLSMaxSessions is the DTLS server's session limit, exported as
	// spacecaptain_connections_max{transport="dtls"}. Zero leaves it out.
	DTLSMaxSessions int

	// Now is the clock [Metrics.CheckCertificate] compares the
	// certificate's validity with. Nil means time.Now.
	Now func() time.Time
}

// Metrics counts what a Space Captain server does, for Prometheus. It
// implements [server.Events]: pass it as server.Options.Events. The
// certificate metrics are set by [Metrics.CertLoaded] and
// [Metrics.CertReloaded], which the CLI calls from the certificate
// source's reload hook.
//
// Every metric lives on the Metrics' own registry ([Metrics.Registry]),
// never the global one, so several servers (and tests) in one process do not
// collide. A Metrics is safe for concurrent use; make one with [New] (the
// zero value is not usable). Its Events methods do not block, and do not
// allocate for the reasons, kinds and types packages server and proto
// define.
type Metrics struct {
	reg *prometheus.Registry
	now func() time.Time

	open        atomic.Int64
	accepted    prometheus.Counter
	unannounced prometheus.Counter
	refused     labeled
	closed      labeled
	protoErr    labeled

	handshakes *prometheus.CounterVec
	hsCache    [numResults][numVersions][2]atomic.Pointer[counterRef]
	hsDuration [2]prometheus.Observer // by resumed

	requestVecs struct {
		count, in, out *prometheus.CounterVec
		duration       *prometheus.HistogramVec
	}
	requests [proto.Keys + 1]requestMetrics // by proto.Type

	reloads labeled
	cert    *certCollector
	clients *clientLists

	dtls *DTLSEvents // nil without Options.DTLS
}

// requestMetrics are the pre-resolved children for one request type.
type requestMetrics struct {
	count, in, out prometheus.Counter
	duration       prometheus.Observer
}

// counterRef boxes a Counter for an atomic.Pointer.
type counterRef struct{ c prometheus.Counter }

// labeled is a counter with one label whose usual values are resolved in
// advance, so that counting one costs a map lookup and an atomic add, not
// the vector's hashing and locking.
type labeled struct {
	vec      *prometheus.CounterVec
	children map[string]prometheus.Counter
}

func newLabeled(vec *prometheus.CounterVec, values ...string) labeled {
	l := labeled{vec: vec, children: make(map[string]prometheus.Counter, len(values))}
	for _, v := range values {
		l.children[v] = vec.WithLabelValues(v)
	}
	return l
}

// inc counts one for value. A value not resolved in advance (a reason
// added to package server after this was written) still counts, more
// slowly.
func (l *labeled) inc(value string) {
	if c, ok := l.children[value]; ok {
		c.Inc()
		return
	}
	l.vec.WithLabelValues(value).Inc()
}

// New returns a Metrics with every metric registered on a new registry.
// It starts nothing. It returns an error when opts.MaxConns is negative.
func New(opts Options) (*Metrics, error) {
	if opts.MaxConns < 0 {
		return nil, fmt.Errorf("configuring metrics: max conns %d is negative", opts.MaxConns)
	}
	m := &Metrics{reg: prometheus.NewRegistry(), now: opts.Now, cert: newCertCollector(), clients: newClientLists()}
	if m.now == nil {
		m.now = time.Now
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}

	openGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: NameConnectionsOpen,
		Help: helpConnectionsOpen,
	}, func() float64 { return float64(m.open.Load()) })
	m.accepted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: NameConnectionsAccepted,
		Help: helpConnectionsAccepted,
	})
	refused := counterVec(NameConnectionsRefused,
		helpConnectionsRefused, "reason")
	m.refused = newLabeled(refused, server.RefusedMaxConns, server.RefusedShutdown, server.RefusedSourceConns, server.RefusedSourceRate, server.RefusedProxyHeader)
	closed := counterVec(NameConnectionsClosed, helpConnectionsClosed, "reason")
	m.closed = newLabeled(closed, server.CloseEOF, server.CloseHandshakeError, server.CloseHandshakeTimeout,
		server.CloseIdleTimeout, server.CloseWriteTimeout, server.CloseProtocolError, server.CloseReadError,
		server.CloseWriteError, server.CloseShutdown, server.CloseForced, server.CloseRevoked)
	protoErr := counterVec(NameProtocolErrors,
		helpProtocolErrors, "kind")
	m.protoErr = newLabeled(protoErr, proto.KindTooLarge, proto.KindTruncated, proto.KindUnknownType)

	m.handshakes = counterVec(NameHandshakes,
		helpHandshakes,
		"result", "tls_version", "resumed")
	// The combinations an operator looks for are there from the start,
	// at zero ("did any session resume?"); the rest appear when they
	// happen, instead of 60 series of zeros.
	for _, v := range []int{version12, version13} {
		m.handshakeCounter(resultOK, v, false)
		m.handshakeCounter(resultOK, v, true)
	}
	hsDuration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    NameHandshakeDuration,
		Help:    helpHandshakeDuration,
		Buckets: handshakeBuckets,
	}, []string{"resumed"})
	m.hsDuration[0] = hsDuration.WithLabelValues("false")
	m.hsDuration[1] = hsDuration.WithLabelValues("true")

	rv := &m.requestVecs
	rv.count = counterVec(NameRequests, helpRequests, "type")
	rv.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    NameRequestDuration,
		Help:    helpRequestDuration,
		Buckets: requestBuckets,
	}, []string{"type"})
	rv.in = counterVec(NameRequestBytes, helpRequestBytes, "type")
	rv.out = counterVec(NameReplyBytes, helpReplyBytes, "type")
	for t := range m.requests {
		name := typeLabel(proto.Type(t))
		m.requests[t] = requestMetrics{
			count:    rv.count.WithLabelValues(name),
			duration: rv.duration.WithLabelValues(name),
			in:       rv.in.WithLabelValues(name),
			out:      rv.out.WithLabelValues(name),
		}
	}

	reloads := counterVec(NameCertReloads,
		"Reload attempts of the certificate source, by result (changed: a new certificate is served; unchanged: the files hold the one served; failed: refused, the old one is still served).", "result")
	m.reloads = newLabeled(reloads, ReloadChanged, ReloadUnchanged, ReloadFailed)
	m.unannounced = prometheus.NewCounter(prometheus.CounterOpts{
		Name: NameUnannouncedKeyChanges,
		Help: "Certificates whose key was neither the key served before nor an announced next key (clients pinned to the old key refuse it), by a reload or at start; with --key-change refuse they were not served.",
	})

	cs := []prometheus.Collector{openGauge, m.accepted, refused, closed, protoErr, m.handshakes, hsDuration,
		rv.count, rv.duration, rv.in, rv.out, reloads, m.unannounced, m.cert, m.clients.entries, m.clients.failures}
	if opts.MaxConns > 0 {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: NameConnectionsMax,
			Help: helpConnectionsMax,
		}, func() float64 { return float64(opts.MaxConns) }))
	}
	if !opts.OmitRuntime {
		cs = append(cs, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	if opts.DTLS {
		var err error
		if m.dtls, err = newDTLSEvents(m.reg, opts.DTLSMaxSessions); err != nil {
			return nil, fmt.Errorf("registering the DTLS metrics: %w", err)
		}
	}
	return m, nil
}

// Registry returns the registry that holds every metric of m, for a
// caller that serves it otherwise or adds metrics of its own (their names
// must not collide with these).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// typeLabel is the type label of a request type.
func typeLabel(t proto.Type) string {
	switch t {
	case proto.Echo:
		return TypeEcho
	case proto.Reverse:
		return TypeReverse
	case proto.Time:
		return TypeTime
	case proto.Keys:
		return TypeKeys
	}
	return fmt.Sprintf("type_%d", uint32(t))
}
