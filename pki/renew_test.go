package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// renewLifetime is the lifetime of the certificates made by
// newRenewableDir: three hours, backdate included.
const renewLifetime = 3 * time.Hour

// newRenewableDir makes a layout whose server certificate reaches its
// default renewal point (two thirds of its lifetime) at about due.
func newRenewableDir(t *testing.T, selfSigned bool, due time.Time) *certDir {
	t.Helper()
	issued := due.Add(-time.Duration(float64(renewLifetime)*defaultRenewAfter) + backdate)
	return newCertDir(t, InitOptions{SelfSigned: selfSigned, Validity: renewLifetime - backdate, Now: func() time.Time { return issued }})
}

func mustRenewer(t *testing.T, opts RenewerOptions) *Renewer {
	t.Helper()
	r, err := NewRenewer(opts)
	mustNoErr(t, err)
	return r
}

// A certificate is renewed on the same key once it is due, not before,
// and the running source serves the renewed one.
func TestRenewerRenewsWhenDue(t *testing.T) {
	for _, selfSigned := range []bool{false, true} {
		name := "CA-issued"
		if selfSigned {
			name = "self-signed"
		}
		t.Run(name, func(t *testing.T) {
			d := newRenewableDir(t, selfSigned, time.Now().Add(time.Minute))
			e := startSource(t, d, true, nil)
			clock := newFakeClock(time.Now())
			r := mustRenewer(t, RenewerOptions{CertPath: d.l.ServerCert, Now: clock.Now, Logger: e.rec.logger()})
			old := e.src.State().Certificate
			at := r.RenewAt(old)
			if want := old.NotBefore.Add(2 * renewLifetime / 3); at.Sub(want).Abs() > time.Second {
				t.Fatalf("RenewAt: got %v, want two thirds into the lifetime, %v", at, want)
			}
			before := mustRead(t, d.l.ServerCert)

			clock.Add(at.Add(-time.Second).Sub(clock.Now()))
			res, err := r.Check(context.Background())
			if err != nil || res != nil {
				t.Fatalf("a second before the renewal point: got %+v, %v; want nothing done", res, err)
			}
			if !bytes.Equal(mustRead(t, d.l.ServerCert), before) {
				t.Fatal("the certificate changed before it was due")
			}

			clock.Add(2 * time.Second)
			res, err = r.Check(context.Background())
			mustNoErr(t, err)
			if res == nil || res.Skipped {
				t.Fatalf("at the renewal point: got %+v, want a renewal", res)
			}
			if !bytes.Equal(res.New.RawSubjectPublicKeyInfo, old.RawSubjectPublicKeyInfo) {
				t.Error("the renewed certificate has another key: pins would break")
			}
			if res.New.SerialNumber.Cmp(old.SerialNumber) == 0 {
				t.Error("the renewed certificate has the old serial")
			}
			if got := res.New.NotAfter.Sub(res.New.NotBefore); got != renewLifetime {
				t.Errorf("renewed lifetime: got %v, want the same as before, %v", got, renewLifetime)
			}
			e.rec.waitFor("the renewed certificate served", func() bool { return serving(e.src, res.New) })
			roots := d.roots
			if selfSigned {
				// Every re-issue of a self-signed certificate invalidates
				// the copy CA-file clients hold (docs/TRUST.md): trust the new
				// one, as a pinning client effectively does.
				roots = x509.NewCertPool()
				roots.AddCert(res.New)
				if !bytes.Equal(mustRead(t, d.l.CACert), mustRead(t, d.l.ServerCert)) {
					t.Error("ca.crt is no longer a copy of the self-signed server.crt")
				}
			}
			mustServe(t, e.srv.addr, roots, res.New)

			// Renewed: nothing due any more.
			if res, err := r.Check(context.Background()); err != nil || res != nil {
				t.Errorf("right after renewal: got %+v, %v; want nothing done", res, err)
			}
			found := false
			for _, l := range e.rec.records(slog.LevelInfo) {
				found = found || (l.msg == "certificate renewed" && l.attrs["pin"] == spkiPin(old.RawSubjectPublicKeyInfo))
			}
			if !found {
				t.Error("no Info log line for the renewal with the (unchanged) pin")
			}
			if w := e.rec.records(slog.LevelWarn); len(w) > 0 {
				t.Errorf("warnings: %v", w)
			}
		})
	}
}

// With the real clock: a server started a second from its renewal point
// renews and serves the new certificate without a restart.
func TestRenewerRunRealClock(t *testing.T) {
	d := newRenewableDir(t, false, time.Now().Add(time.Second))
	var src *CertReloader
	e := startSource(t, d, true, nil)
	src = e.src
	old := src.State().Certificate
	r := mustRenewer(t, RenewerOptions{CertPath: d.l.ServerCert, Logger: e.rec.logger(),
		OnRenew: func(*RotateResult) { src.Reload() }})
	runInBackground(t, r.Run)
	e.rec.waitFor("a renewed certificate", func() bool {
		c := src.State().Certificate
		return !c.Equal(old) && bytes.Equal(c.RawSubjectPublicKeyInfo, old.RawSubjectPublicKeyInfo)
	})
	mustServe(t, e.srv.addr, d.roots, src.State().Certificate)
}

// Several instances sharing a directory renew it once between them, and
// the directory always holds one valid pair.
func TestRenewerInstancesShareADirectory(t *testing.T) {
	d := newRenewableDir(t, false, time.Now().Add(time.Minute))
	clock := newFakeClock(time.Now())
	const instances = 4
	var renewers []*Renewer
	for range instances {
		renewers = append(renewers, mustRenewer(t, RenewerOptions{CertPath: d.l.ServerCert, Now: clock.Now, Logger: newRecorder(t).logger()}))
	}
	for round := range 4 {
		cur := mustReadCert(t, d.l.ServerCert)
		clock.Add(renewers[0].RenewAt(cur).Add(time.Second).Sub(clock.Now()))
		var wg sync.WaitGroup
		start := make(chan struct{})
		results := make([]*RotateResult, instances)
		errs := make([]error, instances)
		for i, r := range renewers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				results[i], errs[i] = r.Check(context.Background())
			}()
		}
		close(start)
		wg.Wait()
		renewed := 0
		for i := range instances {
			mustNoErr(t, errs[i])
			if results[i] != nil && !results[i].Skipped {
				renewed++
			}
		}
		if renewed != 1 {
			t.Fatalf("round %d: %d instances renewed, want 1", round, renewed)
		}
		p, err := LoadPair(d.l.ServerCert, d.l.ServerKey, LoadOptions{Now: clock.Now})
		mustNoErr(t, err)
		if p.Leaf().Equal(cur) || !bytes.Equal(p.Leaf().RawSubjectPublicKeyInfo, cur.RawSubjectPublicKeyInfo) {
			t.Fatalf("round %d: want a new certificate on the same key", round)
		}
		if _, err := os.Stat(filepath.Join(d.l.Dir, journalFileName)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("round %d: a journal was left behind: %v", round, err)
		}
	}
}

// Without the issuing key nothing is renewed; it warns at 30 and 7 days
// before expiry and at expiry, once each, and the files stay as they are.
// Renewal turned off behaves the same.
func TestRenewerWarnsWhenItCannotRenew(t *testing.T) {
	for _, mode := range []string{"no CA key", "disabled"} {
		t.Run(mode, func(t *testing.T) {
			d := newCertDir(t, InitOptions{})
			if mode == "no CA key" {
				mustNoErr(t, os.Remove(d.l.CAKey))
			}
			rec := newRecorder(t)
			clock := newFakeClock(time.Now())
			r := mustRenewer(t, RenewerOptions{CertPath: d.l.ServerCert, Now: clock.Now, Logger: rec.logger(), Disabled: mode == "disabled"})
			cert := mustReadCert(t, d.l.ServerCert)
			before := mustRead(t, d.l.ServerCert)
			day := 24 * time.Hour
			steps := []struct {
				left      time.Duration
				wantLevel slog.Level // the new record's level, or 0 for none
			}{
				{31 * day, 0},
				{29 * day, slog.LevelWarn},
				{20 * day, 0},
				{7*day - time.Second, slog.LevelWarn},
				{1 * day, 0},
				{-time.Second, slog.LevelError},
				{-2 * day, 0},
			}
			seen := 0
			for _, s := range steps {
				clock.Add(cert.NotAfter.Add(-s.left).Sub(clock.Now()))
				res, err := r.Check(context.Background())
				if res != nil {
					t.Fatalf("%v left: renewed, want no renewal", s.left)
				}
				if wantErr := mode == "no CA key"; wantErr != errors.Is(err, ErrIssuerKeyMissing) {
					t.Fatalf("%v left: got error %v, want ErrIssuerKeyMissing: %v", s.left, err, wantErr)
				}
				recs := rec.records(slog.LevelWarn)
				got := recs[seen:]
				seen = len(recs)
				switch {
				case s.wantLevel == 0 && len(got) > 0:
					t.Errorf("%v left: got %v, want no new warning", s.left, got)
				case s.wantLevel != 0 && (len(got) != 1 || got[0].level != s.wantLevel):
					t.Errorf("%v left: got %v, want one %s record", s.left, got, s.wantLevel)
				case s.wantLevel != 0 && got[0].attrs["path"] != d.l.ServerCert:
					t.Errorf("%v left: got %v, want the path", s.left, got[0])
				}
			}
			if !bytes.Equal(mustRead(t, d.l.ServerCert), before) {
				t.Error("the certificate file changed")
			}
		})
	}
}

// Run reports once that it cannot renew.
func TestRenewerRunWithoutIssuerKey(t *testing.T) {
	d := newCertDir(t, InitOptions{})
	mustNoErr(t, os.Remove(d.l.CAKey))
	rec := newRecorder(t)
	r := mustRenewer(t, RenewerOptions{CertPath: d.l.ServerCert, Logger: rec.logger()})
	runInBackground(t, r.Run)
	rec.waitFor("the warning", func() bool { return len(rec.records(slog.LevelWarn)) > 0 })
	w := rec.records(slog.LevelWarn)[0]
	if !strings.Contains(w.msg, "cannot renew") || !strings.Contains(w.attrs["err"], CAKeyFile) {
		t.Errorf("got %v, want a warning that names the missing CA key", w)
	}
}

// A due renewal that fails returns why, and leaves the files alone.
func TestRenewerFailure(t *testing.T) {
	d := newRenewableDir(t, false, time.Now().Add(time.Minute))
	// The CA key is encrypted and no passphrase is given.
	mustNoErr(t, WriteKeyFile(d.l.CAKey, d.caKey, WriteOptions{Passphrase: []byte("x"), Overwrite: true}))
	clock := newFakeClock(time.Now().Add(2 * time.Minute))
	r := mustRenewer(t, RenewerOptions{CertPath: d.l.ServerCert, Now: clock.Now, Logger: newRecorder(t).logger()})
	before := mustRead(t, d.l.ServerCert)
	if _, err := r.Check(context.Background()); !errors.Is(err, ErrPassphraseRequired) {
		t.Errorf("got %v, want ErrPassphraseRequired", err)
	}
	if !bytes.Equal(mustRead(t, d.l.ServerCert), before) {
		t.Error("a failed renewal changed the certificate")
	}
}

func TestNewRenewerErrors(t *testing.T) {
	d := newCertDir(t, InitOptions{})
	for _, f := range []float64{-0.5, 1, 1.5, math.NaN()} {
		if _, err := NewRenewer(RenewerOptions{CertPath: d.l.ServerCert, RenewAfter: f}); err == nil || !strings.Contains(err.Error(), "fraction") {
			t.Errorf("RenewAfter %v: got %v, want an error about the fraction", f, err)
		}
	}
	if _, err := NewRenewer(RenewerOptions{CertPath: filepath.Join(d.l.Dir, "missing.crt")}); err == nil || !strings.Contains(err.Error(), "missing.crt") {
		t.Errorf("missing certificate: got %v, want an error naming it", err)
	}
}

// A CA key others may read is refused when the renewer is made, not at the
// first renewal months later; with renewal off it only matters to Rotate.
func TestNewRenewerRefusesReadableCAKey(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no mode bits on Windows")
	}
	dir := t.TempDir()
	if _, err := InitLayout(context.Background(), InitOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	l := DefaultLayout(dir)
	if err := os.Chmod(l.CAKey, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRenewer(RenewerOptions{CertPath: l.ServerCert, KeyPath: l.ServerKey}); !errors.Is(err, ErrKeyFilePermissions) {
		t.Errorf("renewal on: got %v, want ErrKeyFilePermissions", err)
	}
	if _, err := NewRenewer(RenewerOptions{CertPath: l.ServerCert, KeyPath: l.ServerKey, Disabled: true}); err != nil {
		t.Errorf("renewal off: got %v, want no error", err)
	}
}
