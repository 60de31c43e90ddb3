package servercmd

import (
	"context"
	"crypto/tls"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/metrics"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// certInfo describes the served certificate for logs.
type certInfo struct {
	Serial   string
	NotAfter time.Time
	Pin      pinning.Pin
	NextPin  pinning.Pin // zero without a next key
}

// servedCert is where the server's certificate and the body of its KEYS
// reply come from: a pki.CertReloader, which watches the
// certificate, key and next key files, plus the KEYS body rebuilt whenever
// what it serves changes. The server reaches it only through
// GetCertificate (with tls.Config.Certificates left empty, so that clients
// dialing an IP, which send no SNI, see a reloaded certificate too) and
// Keys. Safe for concurrent use.
type servedCert struct {
	rl   *pki.CertReloader
	keys atomic.Pointer[[]byte]
	gen  atomic.Uint64

	// m, when not nil, is told about every reload attempt and every new
	// certificate; now stamps the reloads.
	m   *metrics.Metrics
	now func() time.Time
}

// newServedCert loads the pair (and the next key) named by o; an error
// means there is nothing to serve. It starts nothing: call Run. m may be
// nil (no --metrics-listen); when it is not, it already holds the initial
// load when newServedCert returns, because pki.NewCertReloader reports
// that load to OnReload from inside the constructor.
func newServedCert(o *options, log *slog.Logger, now func() time.Time, m *metrics.Metrics, readOnly bool) (*servedCert, error) {
	s := &servedCert{m: m, now: now}
	rl, err := pki.NewCertReloader(pki.CertReloaderOptions{
		CertPath:    o.cert,
		KeyPath:     o.key,
		NextKeyPath: o.nextKey,
		Key: pki.KeyOptions{
			// The passphrase is asked for (if at all) during this first
			// load, on the main goroutine; cli.Passphrase remembers it,
			// so reloads never prompt.
			Passphrase: o.pass.Source("the server key " + o.key),
			// A key others may read is refused, as OpenSSH refuses such
			// identity files: it may have leaked. So is one another user
			// could have planted (its owner, a writable directory).
			RequirePrivateFile: true,
		},
		OnReload:  s.onReload,
		Logger:    log,
		Now:       now,
		NoRecover: readOnly,
	})
	if err != nil {
		return nil, err
	}
	s.rl = rl
	return s, nil
}

// onReload counts the reload for the metrics and, when the served
// certificate or next key changed, rebuilds the KEYS body and the
// certificate metrics. The reloader calls it under its reload lock, one call at a
// time, after every attempt (file event, periodic check, SIGHUP).
//
// A refusal the reloader will look at again once the files settle (a
// rotation caught between its renames) is not counted: only the second
// look is, so that result="failed" counts refusals that keep the old pair
// serving, which an operator must act on.
func (s *servedCert) onReload(ev pki.ReloadEvent) {
	if s.m != nil && !(ev.Result == pki.ReloadFailed && ev.Recheck) {
		s.m.CertReloaded(string(ev.Result), s.now())
	}
	st := ev.State
	if st == nil || (s.keys.Load() != nil && s.gen.Load() == st.Generation) {
		return
	}
	info := infoOf(st)
	if s.m != nil {
		s.m.CertLoaded(st.Certificate, info.Pin.String())
	}
	var next []string
	if !info.NextPin.IsZero() {
		next = []string{info.NextPin.String()}
	}
	body := proto.AppendKeys(nil, info.Pin.String(), next)
	s.keys.Store(&body)
	s.gen.Store(st.Generation)
}

// GetCertificate returns the pair being served; safe for use as a
// tls.Config callback.
func (s *servedCert) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.rl.GetCertificate(hello)
}

// Keys returns the KEYS reply body: the current pin, then the next key's
// pin when there is a next key. The slice is never modified.
func (s *servedCert) Keys() []byte { return *s.keys.Load() }

// Reload re-reads the files now (SIGHUP); on failure the served pair stays
// and the error says why.
func (s *servedCert) Reload() error { return s.rl.Reload() }

// Run watches the files until ctx ends.
func (s *servedCert) Run(ctx context.Context) error { return s.rl.Run(ctx) }

// Info describes what is served now.
func (s *servedCert) Info() certInfo { return infoOf(s.rl.State()) }

func infoOf(st *pki.CertState) certInfo {
	leaf := st.Certificate
	info := certInfo{Serial: pki.SerialHex(leaf.SerialNumber), NotAfter: leaf.NotAfter, Pin: pinning.PinOf(leaf)}
	if st.NextSPKI != nil {
		info.NextPin = pinning.PinOfSPKI(st.NextSPKI)
	}
	return info
}
