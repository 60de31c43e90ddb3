package servercmd

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/metrics"
)

// hookHandler is a slog.Handler that gives every record to on, on the
// goroutine that logs it.
type hookHandler struct{ on func(slog.Record) }

func (h hookHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h hookHandler) Handle(_ context.Context, r slog.Record) error { h.on(r); return nil }
func (h hookHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h hookHandler) WithGroup(string) slog.Handler                 { return h }

// spacecaptain_cert_reloads_total{result="failed"} counts the refusals an
// operator must act on: a reload that catches a key-changing rotation
// between its renames (the key renamed in, the certificate not yet) is
// looked at again once the files settle and is not counted; a broken
// certificate that stays refused is.
func TestReloadMetricCountsOnlyLastingFailures(t *testing.T) {
	l := mustInit(t)
	other := mustInit(t) // a new key, and a certificate for it
	m, err := metrics.New(metrics.Options{OmitRuntime: true})
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan string, 64)
	var second sync.Once
	log := slog.New(hookHandler{func(r slog.Record) {
		t.Logf("%s %s", r.Level, r.Message)
		if r.Message == "certificate reload failed, looking again once the files settle" {
			// Logged on the reloading goroutine, before the source can
			// look again: the rotation's second rename comes now.
			second.Do(func() {
				if err := os.Rename(other.ServerCert, l.ServerCert); err != nil {
					t.Error(err)
				}
			})
		}
		select {
		case msgs <- r.Message:
		default:
		}
	}})
	waitFor := func(msg string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case got := <-msgs:
				if got == msg {
					return
				}
			case <-timeout:
				t.Fatalf("no %q logged within 30s", msg)
			}
		}
	}
	failed := func() float64 {
		t.Helper()
		mfs, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != metrics.NameCertReloads {
				continue
			}
			for _, s := range mf.GetMetric() {
				for _, lp := range s.GetLabel() {
					if lp.GetName() == "result" && lp.GetValue() == metrics.ReloadFailed {
						return s.GetCounter().GetValue()
					}
				}
			}
		}
		t.Fatalf("no %s{result=%q} series", metrics.NameCertReloads, metrics.ReloadFailed)
		return 0
	}

	o := &options{cert: l.ServerCert, key: l.ServerKey, pass: &cli.Passphrase{Getenv: func(string) string { return "" }}}
	src, err := newServedCert(o, log, time.Now, m, false)
	if err != nil {
		t.Fatal(err)
	}
	// The first rename of a key-changing rotation: the new key is in,
	// its certificate not yet. The watch's first look (when Run starts)
	// catches the pair between the two.
	if err := os.Rename(other.ServerKey, l.ServerKey); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Error(err)
		}
	})
	waitFor("certificate reloaded")
	// Reload takes the source's lock: the reloads before it, and their
	// metrics, are done.
	if err := src.Reload(); err != nil {
		t.Fatalf("reload after the rotation: %v", err)
	}
	if got := failed(); got != 0 {
		t.Errorf("failed reloads after a rotation caught between its renames: got %v, want 0", got)
	}

	// A broken certificate: refused on the file event, again once the
	// files have settled (that look counts and warns), and on SIGHUP.
	tmp := filepath.Join(filepath.Dir(l.ServerCert), "broken.tmp")
	if err := os.WriteFile(tmp, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, l.ServerCert); err != nil {
		t.Fatal(err)
	}
	waitFor("certificate not reloaded, keeping the one being served")
	if err := src.Reload(); err == nil {
		t.Fatal("a reload of the broken certificate succeeded")
	}
	if got := failed(); got < 2 {
		t.Errorf("failed reloads after a broken certificate: got %v, want at least 2 (the look once the files settled, and the explicit reload)", got)
	}
}
