package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/trustfile"
)

// Self-renewal defaults.
const (
	// defaultRenewAfter is the fraction of a certificate's lifetime after
	// which [Renewer] renews it: with the default 90 days, 30 days before
	// expiry, which leaves weeks to notice a renewal that keeps failing
	// (the same rule as ACME clients such as certbot and Caddy).
	defaultRenewAfter = 2.0 / 3.0

	// defaultRenewInterval is how often [Renewer.Run] looks at the
	// certificate on disk when nothing is due sooner.
	defaultRenewInterval = 10 * time.Minute

	// renewLockTimeout bounds the wait for another process's rotation.
	renewLockTimeout = 30 * time.Second

	// minRenewWait keeps a timer that fires a hair early from spinning.
	minRenewWait = 50 * time.Millisecond
)

// expiryWarnings returns the times left at which a certificate that will
// not be renewed is warned about: 30 days, 7 days and expiry.
func expiryWarnings() [3]time.Duration {
	return [...]time.Duration{30 * 24 * time.Hour, 7 * 24 * time.Hour, 0}
}

// RenewerOptions configures a [Renewer]. The zero value renews
// certs/server.crt on its own key two thirds into its lifetime, signed by
// certs/ca.key (or by its own key when self-signed).
type RenewerOptions struct {
	// CertPath and KeyPath are the certificate and its key, as in
	// [RotateOptions]. Default certs/server.crt and [SiblingKeyPath] of it.
	CertPath, KeyPath string

	// IssuerCertPath and IssuerKeyPath name the CA, as in
	// [RotateOptions]. Default: ca.crt and ca.key beside CertPath for a
	// CA-issued certificate; a self-signed one is re-signed by its own
	// key. Without the issuer's key there is no renewal, only warnings.
	IssuerCertPath, IssuerKeyPath string

	// KeyPassphrase and IssuerKeyPassphrase read encrypted keys; they are
	// called at renewal time and must not prompt.
	KeyPassphrase, IssuerKeyPassphrase func() ([]byte, error)

	// Tokens opens keys kept in PKCS#11 tokens (the key, or the CA key,
	// given as a pkcs11: URI or a .uri file): a CA key in a token renews
	// the certificate without ever being on disk. Nil means such keys
	// cannot renew.
	Tokens *Tokens

	// RenewAfter is the fraction of the certificate's lifetime (NotBefore
	// to NotAfter) after which it is renewed, between 0 and 1 exclusive.
	// Default 2/3: with a 90-day certificate, 30 days before it expires,
	// which leaves weeks to notice a renewal that keeps failing.
	RenewAfter float64

	// Disabled turns renewal off (sc-server --auto-renew=false): the
	// Renewer only warns before expiry. Default false.
	Disabled bool

	// Validity is the lifetime of a renewed certificate. Default: the
	// same as the current one's.
	Validity time.Duration

	// Interval is how often Run looks when nothing is due sooner. Default
	// 10 minutes.
	Interval time.Duration

	// OnRenew, when set, is called after this process renewed the
	// certificate. The reloading [CertReloader] picks the new file up by itself;
	// calling [CertReloader.Reload] here serves it without waiting for the
	// debounce.
	OnRenew func(*RotateResult)

	// Logger receives renewals (Info), expiry warnings (Warn; Error once
	// expired) and, from Run, failed renewals (Warn). Nil means
	// slog.Default().
	Logger *slog.Logger

	// Now and Rand as in [RotateOptions]. Nil means the real sources.
	Now  func() time.Time
	Rand io.Reader
}

// Renewer renews a certificate in place, on the same key (so no pin
// changes), once a set fraction of its lifetime has passed — when it holds
// the issuing key: the local CA's, or the certificate's own when it is
// self-signed. It renews through [Rotate], under the directory's lock and
// only if the certificate on disk is still due, so several instances
// sharing one directory renew it once between them and never corrupt it.
// The reloading [CertReloader] serves the new file like any rotation.
//
// Without the issuing key, or with renewal disabled, it warns 30 and 7
// days before expiry and at expiry; the server keeps serving.
//
// A Renewer is safe for concurrent use. Make one with [NewRenewer].
type Renewer struct {
	opts    RenewerOptions
	log     *slog.Logger
	running atomic.Bool

	mu         sync.Mutex // guards the warning state
	warnSerial string
	warnLevel  int
}

// NewRenewer checks opts and reads the certificate once. It starts no
// goroutine: call [Renewer.Run], or [Renewer.Check] on a schedule of your
// own.
func NewRenewer(opts RenewerOptions) (*Renewer, error) {
	if opts.CertPath == "" {
		opts.CertPath = filepath.Join(defaultDir, ServerCertFile)
	}
	if opts.KeyPath == "" {
		opts.KeyPath = ResolveKeyPath(SiblingKeyPath(opts.CertPath))
	}
	opts.KeyPath = opts.Tokens.TakePIN(opts.KeyPath)
	opts.IssuerKeyPath = opts.Tokens.TakePIN(opts.IssuerKeyPath)
	if opts.RenewAfter == 0 {
		opts.RenewAfter = defaultRenewAfter
	}
	if math.IsNaN(opts.RenewAfter) || opts.RenewAfter <= 0 || opts.RenewAfter >= 1 {
		return nil, fmt.Errorf("certificate renewal: renew after %v of the lifetime: want a fraction between 0 and 1", opts.RenewAfter)
	}
	if opts.Validity < 0 || opts.Interval < 0 {
		return nil, errors.New("certificate renewal: negative validity or interval")
	}
	if opts.Interval == 0 {
		opts.Interval = defaultRenewInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cert, err := ReadCertificateFile(opts.CertPath)
	if err != nil {
		return nil, err
	}
	r := &Renewer{opts: opts, log: opts.Logger}
	if !opts.Disabled {
		if err := r.loadIssuer(cert); err != nil {
			return nil, fmt.Errorf("certificate renewal: %w", err)
		}
	}
	return r, nil
}

// loadIssuer loads the issuing CA as a renewal would, so that a CA key
// that cannot be used fails now rather than at the first renewal, months
// later: one others may read or may have planted, one that does not
// parse, one that is not the key of its certificate. A missing CA key, one
// encrypted without a passphrase source, or a CA that did not issue the
// certificate means no renewal, only warnings, as before.
func (r *Renewer) loadIssuer(cert *x509.Certificate) error {
	if IsSelfSigned(cert) && r.opts.IssuerCertPath == "" && r.opts.IssuerKeyPath == "" {
		return nil
	}
	_, _, err := loadIssuer(cert, filepath.Dir(r.opts.CertPath), RotateOptions{
		CertPath:            r.opts.CertPath,
		IssuerCertPath:      r.opts.IssuerCertPath,
		IssuerKeyPath:       r.opts.IssuerKeyPath,
		IssuerKeyPassphrase: r.opts.IssuerKeyPassphrase,
		Tokens:              r.opts.Tokens,
	})
	switch {
	case err == nil, errors.Is(err, ErrIssuerKeyMissing), errors.Is(err, ErrNotIssuer), errors.Is(err, ErrPassphraseRequired):
		return nil
	}
	return err
}

// RenewAt returns when cert is due for renewal: RenewAfter of the way from
// its NotBefore to its NotAfter.
func (r *Renewer) RenewAt(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(time.Duration(float64(life) * r.opts.RenewAfter))
}

// Check looks at the certificate on disk once: it renews it if it is due
// and can be renewed, and warns when it nears expiry and will not be. It
// returns what [Rotate] did when the certificate was due (Skipped set when
// another process renewed it first), nil when it was not due or renewal is
// disabled. Without the issuing key it returns an error wrapping
// [ErrIssuerKeyMissing], due or not; a due renewal that fails returns
// Rotate's error. Either way the current certificate keeps serving. Check
// logs renewals and expiry warnings, not its error.
func (r *Renewer) Check(ctx context.Context) (*RotateResult, error) {
	res, _, err := r.check(ctx)
	return res, err
}

func (r *Renewer) check(ctx context.Context) (*RotateResult, *x509.Certificate, error) {
	cert, err := ReadCertificateFile(r.opts.CertPath)
	if err != nil {
		return nil, nil, err
	}
	now := r.opts.Now()
	var reason string
	var res *RotateResult
	switch {
	case r.opts.Disabled:
		reason = "automatic renewal is off"
	default:
		if err = r.canRenew(cert); err != nil {
			reason = err.Error()
			break
		}
		if now.Before(r.RenewAt(cert)) {
			// Not due: nothing to warn about either, renewal comes first.
			return nil, cert, nil
		}
		if res, err = r.renew(ctx, cert); err != nil {
			reason = err.Error()
			break
		}
		if res.Skipped {
			r.log.InfoContext(ctx, "certificate already renewed by another process", "path", r.opts.CertPath,
				"serial", SerialHex(res.Old.SerialNumber))
			cert = res.Old // what is on disk now
		} else {
			r.log.InfoContext(ctx, "certificate renewed", "path", r.opts.CertPath,
				"serial", SerialHex(res.New.SerialNumber), "old_serial", SerialHex(res.Old.SerialNumber),
				"not_after", res.New.NotAfter.UTC().Format(time.RFC3339), "pin", spkiPin(res.New.RawSubjectPublicKeyInfo))
			cert = res.New
			if r.opts.OnRenew != nil {
				r.opts.OnRenew(res)
			}
		}
	}
	if reason != "" {
		r.warnExpiry(ctx, cert, now, reason)
	}
	return res, cert, err
}

// canRenew is a cheap look for the issuing key, so that a server without
// it does not decrypt its own key at every check only to learn that.
func (r *Renewer) canRenew(cert *x509.Certificate) error {
	if IsSelfSigned(cert) && r.opts.IssuerCertPath == "" && r.opts.IssuerKeyPath == "" {
		return nil
	}
	issuer, keyPath := r.opts.IssuerCertPath, r.opts.IssuerKeyPath
	if issuer == "" {
		issuer = filepath.Join(filepath.Dir(r.opts.CertPath), CACertFile)
	}
	if keyPath == "" {
		keyPath = ResolveKeyPath(filepath.Join(filepath.Dir(issuer), CAKeyFile))
	}
	if !keyRefExists(keyPath) {
		return &IssuerError{CertPath: r.opts.CertPath, IssuerCertPath: issuer, IssuerKeyPath: keyPath, Missing: keyPath, Err: ErrIssuerKeyMissing}
	}
	if _, _, err := readKeyRef(keyPath, trustfile.CAKey); err != nil {
		return fmt.Errorf("reading key %q: %w", keyPath, err)
	}
	return nil
}

func (r *Renewer) renew(ctx context.Context, cert *x509.Certificate) (*RotateResult, error) {
	ctx, cancel := context.WithTimeout(ctx, renewLockTimeout)
	defer cancel()
	return Rotate(ctx, RotateOptions{
		CertPath:            r.opts.CertPath,
		KeyPath:             r.opts.KeyPath,
		IssuerCertPath:      r.opts.IssuerCertPath,
		IssuerKeyPath:       r.opts.IssuerKeyPath,
		Validity:            r.opts.Validity,
		KeyPassphrase:       r.opts.KeyPassphrase,
		IssuerKeyPassphrase: r.opts.IssuerKeyPassphrase,
		Tokens:              r.opts.Tokens,
		// Under the lock: renew only if the certificate on disk is still
		// due, so the second of two instances sees the first one's fresh
		// certificate and leaves it.
		OnlyIf: func(current *x509.Certificate) bool { return !r.opts.Now().Before(r.RenewAt(current)) },
		Now:    r.opts.Now,
		Rand:   r.opts.Rand,
	})
}

// warnExpiry logs once per certificate for each threshold it crosses, the
// gravest only when several are crossed at once.
func (r *Renewer) warnExpiry(ctx context.Context, cert *x509.Certificate, now time.Time, reason string) {
	left := cert.NotAfter.Sub(now)
	level := 0
	for i, th := range expiryWarnings() {
		if left <= th {
			level = i + 1
		}
	}
	serial := cert.SerialNumber.String()
	r.mu.Lock()
	if serial != r.warnSerial {
		r.warnSerial, r.warnLevel = serial, 0
	}
	warn := level > r.warnLevel
	if warn {
		r.warnLevel = level
	}
	r.mu.Unlock()
	if !warn {
		return
	}
	args := []any{"path", r.opts.CertPath, "serial", SerialHex(cert.SerialNumber),
		"not_after", cert.NotAfter.UTC().Format(time.RFC3339), "reason", reason}
	if left <= 0 {
		r.log.ErrorContext(ctx, "certificate has expired and was not renewed: clients refuse it", args...)
		return
	}
	r.log.WarnContext(ctx, "certificate expires soon and will not be renewed", append(args, "left", roundDuration(left))...)
}

// Run checks on schedule until ctx ends: at the renewal time, at the
// expiry warnings, and at least every Interval; a failed renewal is
// retried every Interval and logged once per distinct error. It returns
// nil when ctx ends. Call it once.
func (r *Renewer) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("certificate renewal: Run called twice")
	}
	defer r.running.Store(false)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		_, cert, err := r.check(ctx)
		switch {
		case err == nil:
			lastErr = ""
		case err.Error() != lastErr:
			lastErr = err.Error()
			if errors.Is(err, ErrIssuerKeyMissing) {
				r.log.WarnContext(ctx, "cannot renew the certificate, will warn before it expires", "path", r.opts.CertPath, "err", err)
			} else {
				r.log.WarnContext(ctx, "certificate renewal failed, will retry", "path", r.opts.CertPath, "err", err, "retry_in", r.opts.Interval)
			}
		}
		timer.Reset(r.nextWait(cert))
	}
}

// nextWait is the time until the next look: the renewal time or the next
// expiry warning if sooner than Interval.
func (r *Renewer) nextWait(cert *x509.Certificate) time.Duration {
	wait := r.opts.Interval
	if cert == nil {
		return wait
	}
	now := r.opts.Now()
	next := []time.Time{r.RenewAt(cert)}
	for _, th := range expiryWarnings() {
		next = append(next, cert.NotAfter.Add(-th))
	}
	for _, t := range next {
		if d := t.Sub(now); d > 0 && d < wait {
			wait = d
		}
	}
	return max(wait, minRenewWait)
}
