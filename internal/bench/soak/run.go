package soak

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/bench"
)

// Run runs a soak as o says and returns its summary, whose Pass says
// whether it met every criterion (see [Evaluate]). It returns an error, with
// the summary so far, when the run could not be carried out: the server did
// not start or exited, a sample could not be taken, or ctx ended. Every
// process it started has been stopped, by its PID, when it returns.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, fmt.Errorf("configuring the soak: %w", err)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(o.Dir); err != nil {
		return nil, err
	} else if len(entries) > 0 {
		return nil, fmt.Errorf("the soak's directory %s is not empty: give a new one", o.Dir)
	}
	sum := &Summary{
		Engine: o.Engine, Conns: o.Conns, PingPong: o.PingPong, PingPongRate: o.PingPongRate, NewRate: o.NewRate,
		Heartbeat: o.Heartbeat.String(), Minutes: o.Duration.Minutes(), RotateEvery: o.RotateEvery.String(),
		Players: o.Players, CAEvery: o.CAEvery, Note: o.Note,
		Started: time.Now().UTC().Truncate(time.Second), CPUs: runtime.NumCPU(), LoadBefore: loadAvg(),
	}
	var logMu sync.Mutex
	logf := func(format string, args ...any) {
		if o.Log != nil {
			logMu.Lock()
			defer logMu.Unlock()
			fmt.Fprintf(o.Log, "soak: "+format+"\n", args...)
		}
	}

	certs, err := newCertDir(ctx, filepath.Join(o.Bin, "sc-cert"), filepath.Join(o.Dir, "certs"))
	if err != nil {
		return nil, fmt.Errorf("making the certificates: %w", err)
	}
	args := []string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--engine", o.Engine,
		"--cert", filepath.Join(certs.dir, "server.crt"), "--key", filepath.Join(certs.dir, "server.key"),
		// Room for every connection, within the 20,000 descriptors a
		// process may have here.
		"--max-conns", strconv.Itoa(min(o.Conns+o.PingPong+maxNewInFlight+100, 19900)),
		// The load comes from one address: the per-source limits would
		// refuse it.
		"--source-max-conns", "0", "--source-handshake-rate", "0",
		"--log-format", "json"}
	sum.ServerArgs = append([]string{"sc-server"}, relArgs(o.Dir, args)...)
	srv, err := startServer(o.Bin, o.Dir, filepath.Join(o.Dir, "server.log"), args)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	logf("sc-server (%s engine, pid %d) serves on %s, metrics on %s", o.Engine, srv.pid, srv.addr, srv.metricsAddr)

	l, err := newLoad(o, srv.addr, filepath.Join(certs.dir, "ca.crt"), filepath.Join(o.Dir, "players"))
	if err != nil {
		return nil, err
	}
	m0, err := srv.scrape(ctx)
	if err != nil {
		return nil, err
	}
	if o.CSV != nil {
		if err := WriteCSVHeader(o.CSV); err != nil {
			return nil, err
		}
	}

	stop := make(chan struct{})
	ready := make(chan struct{})
	var wg sync.WaitGroup
	// The load starts once the first sample, the server without it, is
	// taken.
	startLoad := func(t0 time.Time) {
		l.start = t0
		var opened sync.WaitGroup
		sem := make(chan struct{}, o.DialConcurrency)
		opened.Add(o.Conns)
		for i := range o.Conns {
			wg.Go(func() { l.heldConn(i, sem, &opened, ready, stop) })
		}
		wg.Go(func() {
			opened.Wait()
			sum.OpenSeconds = time.Since(t0).Seconds()
			close(ready)
			logf("%d held connections open after %.1fs", l.held.Load(), sum.OpenSeconds)
			for i := range o.PingPong {
				wg.Go(func() { l.pingPong(i, stop) })
			}
			l.newConns(o.Conns, stop, &wg)
		})
	}

	var rotMu sync.Mutex
	var rotations atomic.Int64
	rotWG := sync.WaitGroup{}
	rotate := func(t0 time.Time) {
		l.rotate(ctx, o, certs, srv, t0, ready, stop, func(r Rotation) {
			rotMu.Lock()
			sum.Rotations = append(sum.Rotations, r)
			rotMu.Unlock()
			if r.Err == "" {
				rotations.Add(1)
				logf("rotation %d at %.1fs: %s, serial %s, served after %.0f ms", len(sum.Rotations), r.T, r.Kind, r.Serial, r.ServedMs)
			} else {
				logf("rotation %d at %.1fs: %s FAILED: %s", len(sum.Rotations), r.T, r.Kind, r.Err)
			}
		})
	}

	samples, runErr := l.sampleLoop(ctx, o, srv, &rotations, logf, func(t0 time.Time) {
		startLoad(t0)
		rotWG.Go(func() { rotate(t0) })
	})

	close(stop)
	rotWG.Wait()
	wg.Wait()
	m1, scrapeErr := srv.scrape(context.Background())
	stopErr := srv.stop()
	sum.LoadAfter = loadAvg()

	t := &sum.Totals
	t.Handshakes, t.Heartbeats, t.PingPongs, t.NewConns = l.tot.handshakes.Load(), l.tot.heartbeats.Load(), l.tot.pingPongs.Load(), l.tot.newConns.Load()
	t.Errors, t.Lockouts, t.Reconnects = l.tot.errors.Load(), l.tot.lockouts.Load(), l.tot.reconnects.Load()
	t.KeysLearned, t.BadAnnouncements = l.tot.learned.Load(), l.tot.badAnnounced.Load()
	sum.ErrorSamples = l.errSamples
	t.ServerLogWarnings, t.ServerLogErrors, sum.ServerLogSamples = srv.logLevels()
	if scrapeErr == nil {
		t.ServerFailedHandshakes = int64(m1.failedHandshakes() - m0.failedHandshakes())
		t.ServerErrorCloses = int64(m1.errorCloses() - m0.errorCloses())
		t.ServerReloadsFailed = int64(m1.reloadsFailed() - m0.reloadsFailed())
	}
	Evaluate(o, sum, samples)
	switch {
	case runErr != nil:
		return sum, runErr
	case scrapeErr != nil:
		return sum, scrapeErr
	case stopErr != nil:
		return sum, fmt.Errorf("stopping sc-server: %w", stopErr)
	}
	return sum, nil
}

// sampleLoop takes a sample every Sample from now to the end of the run,
// writing each to the CSV as it goes; after the first one, of the server
// alone, it calls start with the time of that first sample.
func (l *load) sampleLoop(ctx context.Context, o Options, srv *serverProc, rotations *atomic.Int64,
	logf func(string, ...any), start func(t0 time.Time)) ([]Sample, error) {
	t0 := time.Now()
	var samples []Sample
	var prevCPU time.Duration
	var prevCycles int64
	var prevPause float64
	n := int(o.Duration / o.Sample)
	for k := 0; k <= n; k++ {
		at := t0.Add(time.Duration(k) * o.Sample)
		timer := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
			timer.Stop()
			return samples, ctx.Err()
		case <-srv.exited:
			timer.Stop()
			return samples, fmt.Errorf("sc-server exited during the run (%v): see its log", srv.exitErr)
		case <-timer.C:
		}
		ps, err := bench.ReadProc(srv.pid)
		if err != nil {
			return samples, err
		}
		m, err := srv.scrape(ctx)
		if err != nil {
			return samples, err
		}
		w := l.win.Swap(newWindows())
		w.mu.Lock()
		cycles, pause, maxRecent := m.gc()
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		s := Sample{
			T: (time.Duration(k) * o.Sample).Seconds(), Held: int(l.held.Load()),
			RSS: ps.RSS, HeapInuse: int64(m.value("go_memstats_heap_inuse_bytes", "", nil)),
			Goroutines: int(m.value("go_goroutines", "", nil)), FDs: ps.FDs,
			GCCycles: cycles - prevCycles, GCPauseMs: 1000 * (pause - prevPause), GCPauseMaxMs: 1000 * maxRecent,
			CPU:     (ps.CPU - prevCPU).Seconds(),
			HBCount: int64(w.hb.Count()), HBP50: ms(w.hb.Quantile(0.5)), HBP99: ms(w.hb.Quantile(0.99)), HBMax: ms(w.hb.Max()),
			PPCount: int64(w.pp.Count()), PPP99: ms(w.pp.Quantile(0.99)),
			NewCount: int64(w.nw.Count()), NewP99: ms(w.nw.Quantile(0.99)),
			Errors: w.errors, Reconnects: w.reconnects, Lockouts: w.lockouts,
			Rotations: int(rotations.Load()),
		}
		w.mu.Unlock()
		if k == 0 {
			// The first sample is the server before any load: its
			// window has no clients, and its GC and CPU counts are since
			// the process started.
			s.GCCycles, s.GCPauseMs, s.CPU = 0, 0, 0
		}
		prevCPU, prevCycles, prevPause = ps.CPU, cycles, pause
		samples = append(samples, s)
		if o.CSV != nil {
			if err := s.WriteCSV(o.CSV); err != nil {
				return samples, fmt.Errorf("writing the samples: %w", err)
			}
		}
		if k == 0 {
			start(t0)
		}
		logf("t=%4.0fs held %d, RSS %.1f MiB, heap %.1f MiB, %d goroutines, %d fds, CPU %.2fs; heartbeat p99 %.2f ms (%d), ping-pong p99 %.2f ms, %d new; %d errors, %d rotations",
			s.T, s.Held, mib(s.RSS), mib(s.HeapInuse), s.Goroutines, s.FDs, s.CPU, s.HBP99, s.HBCount, s.PPP99, s.NewCount, l.tot.errors.Load(), s.Rotations)
	}
	return samples, nil
}

// rotate rotates the certificate every RotateEvery from t0, cycling the
// kinds, until shortly before the end of the run; report gets each
// rotation. A key change waits until every player has learned the key it
// moves to (they reconnect every few seconds); if one has not within
// half a period, the promotion is skipped and reported as failed, rather
// than locking that player out.
func (l *load) rotate(ctx context.Context, o Options, certs *certDir, srv *serverProc, t0 time.Time,
	ready, stop <-chan struct{}, report func(Rotation)) {
	select {
	case <-ready:
	case <-stop:
		return
	}
	// A rotation must have been served before the last sample.
	margin := min(o.RotateEvery/2, servedWithin)
	kinds := Kinds()
	for k := 1; ; k++ {
		at := t0.Add(time.Duration(k) * o.RotateEvery)
		if at.After(t0.Add(o.Duration - margin)) {
			return
		}
		if !wait(stop, time.Until(at)) {
			return
		}
		kind := kinds[(k-1)%len(kinds)]
		r := Rotation{T: time.Since(t0).Seconds(), Kind: kind}
		if kind == RotatePromote {
			next, err := certs.nextPin()
			if err != nil {
				r.Err = err.Error()
				report(r)
				continue
			}
			deadline := time.Now().Add(min(o.RotateEvery/2, 30*time.Second))
			for {
				ok, who := l.allLearned(next)
				if ok {
					break
				}
				if time.Now().After(deadline) {
					r.Err = fmt.Sprintf("player %d had not learned the next key %s from KEYS: promoting it would lock that player out", who, next)
					break
				}
				if !wait(stop, 50*time.Millisecond) {
					return
				}
			}
			if r.Err != "" {
				report(r)
				continue
			}
		}
		res, err := certs.apply(ctx, kind, srv)
		if err != nil {
			r.Err = err.Error()
			report(r)
			continue
		}
		onDisk := time.Now()
		r.Serial, r.Pin, r.KeyChanged = res.NewSerial, res.Pin, res.Promoted
		if r.NextPin, err = certs.nextPin(); err != nil {
			r.Err = err.Error()
		}
		for r.Err == "" {
			serial, err := l.servedSerial()
			if err != nil {
				l.fail("probing the served certificate", err)
			} else if serial == r.Serial {
				r.ServedMs = float64(time.Since(onDisk)) / float64(time.Millisecond)
				break
			}
			if time.Since(onDisk) > servedWithin {
				r.Err = fmt.Sprintf("new handshakes still got serial %s %v after serial %s was written", serial, servedWithin, r.Serial)
				break
			}
			if !wait(stop, 20*time.Millisecond) {
				r.Err = "the run ended before the new certificate was served"
			}
		}
		report(r)
	}
}

// loadAvg returns the 1, 5 and 15 minute load averages of /proc/loadavg,
// "unknown" elsewhere.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
