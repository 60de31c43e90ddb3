package metrics

import (
	"crypto/x509"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spacecaptain/spacecaptain/pki"
)

// CertLoaded sets the certificate metrics to cert, the leaf certificate
// being served, and pin, its key's pin ("sha256//…", as package pinning
// writes it): the not-before and not-after timestamps and the info
// metric, whose series for the previous certificate disappears. A nil
// cert clears them (nothing is served). Calling it again with the same
// certificate changes nothing, so the CLI may call it after every reload.
//
// The serial label is written as pki.SerialHex does, as sc-cert inspect
// and the server's logs print it.
func (m *Metrics) CertLoaded(cert *x509.Certificate, pin string) {
	if cert == nil {
		m.cert.cur.Store(nil)
		return
	}
	m.cert.cur.Store(&certState{
		serial:    pki.SerialHex(cert.SerialNumber),
		pin:       pin,
		notBefore: cert.NotBefore,
		notAfter:  cert.NotAfter,
	})
}

// CertReloaded counts one reload attempt of the certificate source, made
// at the time at, by result: [ReloadChanged], [ReloadUnchanged] or
// [ReloadFailed] — the words of pki.ReloadResult, so the CLI passes
// string(event.Result) from pki.CertReloaderOptions.OnReload, except for a
// refusal with event.Recheck set (files perhaps caught mid-change, looked
// at again once they settle), which it does not pass. Every result but
// ReloadFailed is a success and sets the last-success timestamp: the
// certificate on disk is the one being served.
func (m *Metrics) CertReloaded(result string, at time.Time) {
	m.reloads.inc(result)
	if result != ReloadFailed {
		m.cert.lastSuccess.Store(&at)
	}
}

// CheckCertificate returns nil when m holds a usable certificate: one was
// given to [Metrics.CertLoaded] and the clock ([Options.Now]) is within
// its validity. It is a readiness check for [ServerOptions.Ready]. A
// certificate that expires soon is still usable: that is for alerts on
// spacecaptain_cert_not_after_timestamp_seconds and for the renewer's log
// warnings, not for readiness, or a fleet that shares one certificate
// would leave its load balancer all at once.
//
// It returns [ErrNoCertificate] before a certificate is loaded.
func (m *Metrics) CheckCertificate() error {
	st := m.cert.cur.Load()
	if st == nil {
		return ErrNoCertificate
	}
	now := m.now()
	if now.Before(st.notBefore) {
		return fmt.Errorf("certificate serial %s is not valid before %s (is the clock behind?)",
			st.serial, st.notBefore.UTC().Format(time.RFC3339))
	}
	if now.After(st.notAfter) {
		return fmt.Errorf("certificate serial %s expired at %s: renew it on the same key with sc-cert rotate",
			st.serial, st.notAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// certState is the certificate being served, as the metrics show it.
type certState struct {
	serial, pin         string
	notBefore, notAfter time.Time
}

// certCollector exports the certificate state at scrape time: one atomic
// load gives a consistent set, and the info series of a replaced
// certificate is simply no longer there.
type certCollector struct {
	cur         atomic.Pointer[certState]
	lastSuccess atomic.Pointer[time.Time]

	notAfter, notBefore, info, lastReload *prometheus.Desc
}

func newCertCollector() *certCollector {
	return &certCollector{
		notAfter: prometheus.NewDesc(NameCertNotAfter,
			"When the certificate being served expires, as a Unix timestamp. Alert on it minus time() (e.g. under 14 days).", nil, nil),
		notBefore: prometheus.NewDesc(NameCertNotBefore,
			"When the certificate being served became valid, as a Unix timestamp.", nil, nil),
		info: prometheus.NewDesc(NameCertInfo,
			"The certificate being served: its serial (colon-separated hex, as sc-cert inspect prints it) and its key's pin. Always 1; one series.", []string{"serial", "pin"}, nil),
		lastReload: prometheus.NewDesc(NameCertLastReloadSuccess,
			"When the certificate source last reloaded successfully (changed or unchanged), as a Unix timestamp.", nil, nil),
	}
}

// Describe sends the descriptors of the certificate metrics.
func (c *certCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.notAfter
	ch <- c.notBefore
	ch <- c.info
	ch <- c.lastReload
}

// Collect sends the certificate metrics that have a value: none before a
// certificate is loaded (a zero expiry would look expired).
func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	if st := c.cur.Load(); st != nil {
		ch <- prometheus.MustNewConstMetric(c.notAfter, prometheus.GaugeValue, unixSeconds(st.notAfter))
		ch <- prometheus.MustNewConstMetric(c.notBefore, prometheus.GaugeValue, unixSeconds(st.notBefore))
		ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, st.serial, st.pin)
	}
	if at := c.lastSuccess.Load(); at != nil {
		ch <- prometheus.MustNewConstMetric(c.lastReload, prometheus.GaugeValue, unixSeconds(*at))
	}
}

// unixSeconds is t as fractional Unix seconds. Not UnixNano, which
// overflows past 2262: RFC 5280 section 4.1.2.5 has certificates without a
// real expiry say 9999-12-31.
func unixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

// UnannouncedKeyChange counts a certificate whose key was neither the one
// served before nor an announced next key.
func (m *Metrics) UnannouncedKeyChange() { m.unannounced.Inc() }
