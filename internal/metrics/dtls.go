package metrics

import (
	"crypto/tls"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spacecaptain/spacecaptain/internal/dtls"
	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// LabelTransport is the label that tells DTLS series from TCP ones. The
// DTLS server's series carry transport="dtls"; the TCP server's carry no
// transport label, exactly as before DTLS existed, so that every query,
// alert and dashboard written for them reads the same. So
// spacecaptain_connections_open{transport="dtls"} is the DTLS sessions,
// spacecaptain_connections_open{transport=""} the TCP connections, and
// sum(spacecaptain_connections_open) both.
const LabelTransport = "transport"

// TransportDTLS is the transport label's value on DTLS series.
const TransportDTLS = "dtls"

// DTLSEvents counts what the DTLS server does into the same metric
// families as the TCP server's, with transport="dtls". It implements
// dtls.Events (and server.Events: the method sets are the same). Get it
// from [Metrics.DTLS]. It is safe for concurrent use.
type DTLSEvents struct {
	open     atomic.Int64
	accepted prometheus.Counter
	refused  labeled
	closed   labeled
	protoErr labeled

	handshakes *prometheus.CounterVec
	hsOK       prometheus.Counter
	hsDuration prometheus.Observer

	requestVecs struct {
		count, in, out *prometheus.CounterVec
		duration       *prometheus.HistogramVec
	}
	requests [proto.Keys + 1]requestMetrics
}

var _ dtls.Events = (*DTLSEvents)(nil)

// DTLS returns the events of the DTLS transport, or nil when
// [Options.DTLS] was not set (a server without DTLS has no DTLS series).
func (m *Metrics) DTLS() *DTLSEvents { return m.dtls }

// unchecked collects metrics without describing them to the registry, so
// that the DTLS series can share names with the TCP series while having a
// label those lack: the registry checks, at registration, that collectors
// describing one name agree on its labels; the exposition format and
// Prometheus allow series of one family with different labels, and the
// registry still checks at each scrape that they agree on type and help.
type unchecked []prometheus.Collector

func (unchecked) Describe(chan<- *prometheus.Desc) {}

func (u unchecked) Collect(ch chan<- prometheus.Metric) {
	for _, c := range u {
		c.Collect(ch)
	}
}

// newDTLSEvents makes the DTLS series and registers them on reg.
func newDTLSEvents(reg *prometheus.Registry, maxSessions int) (*DTLSEvents, error) {
	d := &DTLSEvents{}
	dl := prometheus.Labels{LabelTransport: TransportDTLS}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: dl}, labels)
	}
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: NameConnectionsOpen, Help: helpConnectionsOpen, ConstLabels: dl},
		func() float64 { return float64(d.open.Load()) })
	d.accepted = prometheus.NewCounter(prometheus.CounterOpts{Name: NameConnectionsAccepted, Help: helpConnectionsAccepted, ConstLabels: dl})
	refused := counterVec(NameConnectionsRefused, helpConnectionsRefused, "reason")
	d.refused = newLabeled(refused, dtls.RefusedMaxSessions, dtls.RefusedShutdown, dtls.RefusedSourceSessions,
		dtls.RefusedSourceRate, dtls.RefusedHalfOpen, dtls.RefusedCookieTimeout)
	closed := counterVec(NameConnectionsClosed, helpConnectionsClosed, "reason")
	d.closed = newLabeled(closed, dtls.CloseEOF, dtls.CloseHandshakeError, dtls.CloseHandshakeTimeout,
		dtls.CloseIdleTimeout, dtls.CloseReadError, dtls.CloseWriteError, dtls.CloseShutdown, dtls.CloseForced)
	protoErr := counterVec(NameProtocolErrors, helpProtocolErrors, "kind")
	d.protoErr = newLabeled(protoErr, proto.KindTooLarge, proto.KindTruncated, proto.KindUnknownType)
	d.handshakes = counterVec(NameHandshakes, helpHandshakes, "result", "tls_version", "resumed")
	d.hsOK = d.handshakes.WithLabelValues(HandshakeOK, "1.2", "false")
	hsDuration := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: NameHandshakeDuration, Help: helpHandshakeDuration,
		Buckets: handshakeBuckets, ConstLabels: dl}, []string{"resumed"})
	d.hsDuration = hsDuration.WithLabelValues("false")

	rv := &d.requestVecs
	rv.count = counterVec(NameRequests, helpRequests, "type")
	rv.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: NameRequestDuration, Help: helpRequestDuration,
		Buckets: requestBuckets, ConstLabels: dl}, []string{"type"})
	rv.in = counterVec(NameRequestBytes, helpRequestBytes, "type")
	rv.out = counterVec(NameReplyBytes, helpReplyBytes, "type")
	for t := range d.requests {
		name := typeLabel(proto.Type(t))
		d.requests[t] = requestMetrics{
			count:    rv.count.WithLabelValues(name),
			duration: rv.duration.WithLabelValues(name),
			in:       rv.in.WithLabelValues(name),
			out:      rv.out.WithLabelValues(name),
		}
	}
	cs := unchecked{open, d.accepted, refused, closed, protoErr, d.handshakes, hsDuration, rv.count, rv.duration, rv.in, rv.out}
	if maxSessions > 0 {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: NameConnectionsMax, Help: helpConnectionsMax, ConstLabels: dl},
			func() float64 { return float64(maxSessions) }))
	}
	if err := reg.Register(cs); err != nil {
		return nil, err
	}
	return d, nil
}

// ConnAccepted counts a DTLS session whose client returned its cookie.
func (d *DTLSEvents) ConnAccepted() {
	d.open.Add(1)
	d.accepted.Inc()
}

// ConnRefused counts a DTLS client turned away, by reason.
func (d *DTLSEvents) ConnRefused(reason string) { d.refused.inc(reason) }

// ConnClosed counts a DTLS session that ended, by reason.
func (d *DTLSEvents) ConnClosed(reason string) {
	d.open.Add(-1)
	d.closed.inc(reason)
}

// ProtocolError counts a request that broke the protocol, by kind.
func (d *DTLSEvents) ProtocolError(kind string) { d.protoErr.inc(kind) }

// Message counts one answered request, as [Metrics.Message] does.
func (d *DTLSEvents) Message(t proto.Type, took time.Duration, bytesIn, bytesOut int) {
	if int(t) >= len(d.requests) {
		rv := &d.requestVecs
		name := typeLabel(t)
		rv.count.WithLabelValues(name).Inc()
		rv.duration.WithLabelValues(name).Observe(took.Seconds())
		rv.in.WithLabelValues(name).Add(float64(bytesIn))
		rv.out.WithLabelValues(name).Add(float64(bytesOut))
		return
	}
	r := &d.requests[t]
	r.count.Inc()
	r.duration.Observe(took.Seconds())
	r.in.Add(float64(bytesIn))
	r.out.Add(float64(bytesOut))
}

// Handshake counts a DTLS handshake by result ([dtls.HandshakeResult]),
// with tls_version 1.2 (DTLS 1.2) and resumed false, and observes the
// duration of a successful one.
func (d *DTLSEvents) Handshake(_ tls.ConnectionState, took time.Duration, err error) {
	r := dtls.HandshakeResult(err)
	if r == dtls.ResultOK {
		d.hsOK.Inc()
		d.hsDuration.Observe(took.Seconds())
		return
	}
	d.handshakes.WithLabelValues(r, "1.2", "false").Inc()
}
