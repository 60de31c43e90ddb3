package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// Bench is one benchmark run against a server. Make it with [New], run it
// once with [Bench.Run]; [Bench.Progress] may be called from another
// goroutine meanwhile. The zero value is not usable.
type Bench struct {
	opts      Options
	tlsConfig *tls.Config
	payload   []byte
	clientOpt client.Options

	ran   atomic.Bool
	phase atomic.Value // string
	start atomic.Int64 // UnixNano when the measured phase began; 0 before
	ops   atomic.Int64
	errs  atomic.Int64
	// pointsDone counts the scale mode's points measured.
	pointsDone atomic.Int64
}

// New checks opts and returns a Bench ready to Run. It starts nothing and
// dials nothing. It returns an error naming the first option that is out of
// range; on a system without /proc, an Options.PID gives an error wrapping
// [ErrNoProc].
func New(opts Options) (*Bench, error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, fmt.Errorf("configuring the benchmark: %w", err)
	}
	b := &Bench{opts: o, payload: bytes.Repeat([]byte{'x'}, o.Size)}
	if o.TLSConfig != nil {
		b.tlsConfig = o.TLSConfig.Clone()
		switch {
		case !o.Resume:
			b.tlsConfig.ClientSessionCache = nil
		case b.tlsConfig.ClientSessionCache == nil:
			// One entry is enough: every connection goes to the same
			// server, under the same cache key.
			b.tlsConfig.ClientSessionCache = tls.NewLRUClientSessionCache(16)
		}
	}
	b.clientOpt = client.Options{
		TLSConfig:  b.tlsConfig,
		DTLS:       o.DTLS,
		Timeout:    o.Timeout,
		MaxMessage: max(o.Size, proto.DefaultMaxBody),
	}
	b.phase.Store("starting")
	return b, nil
}

// Progress is a snapshot of a running benchmark, for a progress bar.
type Progress struct {
	// Phase is what the benchmark is doing: "connecting" (the first
	// connection), "opening" (connections before the measurement),
	// "running", "holding" (the idle mode) or "done".
	Phase string
	// Ops and Errors count the measured phase's operations and failures so
	// far (in the idle mode, connections opened).
	Ops, Errors int64
	// Elapsed is the time since the measured phase began.
	Elapsed time.Duration
	// Done is how far the run is, from 0 to 1: the larger of the time and
	// the count used up.
	Done float64
}

// Progress returns a snapshot of the run. It is safe to call at any time,
// from any goroutine.
func (b *Bench) Progress() Progress {
	p := Progress{Phase: b.phase.Load().(string), Ops: b.ops.Load(), Errors: b.errs.Load()}
	if s := b.start.Load(); s != 0 {
		p.Elapsed = time.Since(time.Unix(0, s))
	}
	switch b.opts.Mode {
	case ModeIdle:
		p.Done = float64(p.Ops+p.Errors) / float64(b.opts.Conns)
		if p.Phase == "holding" {
			p.Done = 1
		}
	case ModeScale:
		p.Done = float64(b.pointsDone.Load()) / float64(len(b.opts.Points))
	default:
		p.Done = max(p.Elapsed.Seconds()/b.opts.Duration.Seconds(), float64(p.Ops)/float64(b.opts.Count))
	}
	if p.Phase == "done" {
		p.Done = 1
	}
	p.Done = min(max(p.Done, 0), 1)
	return p
}

// Run runs the benchmark and returns its report. It first makes one
// connection (retrying for up to Options.Wait), which also tells the TLS
// version, suite and group; when that fails it returns an error wrapping
// [ErrNoConnection]. Failures during the run are counted in the report,
// not returned. When ctx ends, Run stops and returns ctx.Err(). Run may be
// called once.
func (b *Bench) Run(ctx context.Context) (*Report, error) {
	if !b.ran.CompareAndSwap(false, true) {
		return nil, errors.New("benchmark already run: make a new one with bench.New")
	}
	defer b.phase.Store("done")
	r := &run{b: b, o: b.opts, dialSem: make(chan struct{}, b.opts.DialConcurrency)}
	r.shards = make([]shard, min(b.opts.Conns, 64))
	for i := range r.shards {
		r.shards[i].h = newHistogram()
	}
	r.remaining.Store(b.opts.Count)
	r.report = &Report{
		Mode: b.opts.Mode, Addr: b.opts.Addr, TLS: b.tlsConfig != nil || b.opts.DTLS != nil, Resume: b.opts.Resume,
		Conns: b.opts.Conns, Depth: b.opts.Depth, Size: b.opts.Size,
	}
	if b.opts.Mode == ModeScale {
		r.report.Interval = b.opts.Interval.String()
	}
	b.phase.Store("connecting")
	if err := r.probe(ctx); err != nil {
		return nil, err
	}
	if err := r.sample(&r.before); err != nil {
		return nil, err
	}
	var err error
	switch b.opts.Mode {
	case ModeHandshake:
		err = r.handshakeLoop(ctx)
	case ModeEcho, ModePipeline:
		err = r.exchanges(ctx)
	case ModeIdle:
		err = r.idle(ctx)
	case ModeScale:
		err = r.scale(ctx)
	}
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return r.finish(), nil
}

// run is the state of one Run.
type run struct {
	b       *Bench
	o       Options
	dialSem chan struct{}
	shards  []shard
	report  *Report

	remaining  atomic.Int64 // operations left of Count
	stop       atomic.Bool  // Duration is up
	handshakes atomic.Int64
	resumed    atomic.Int64

	errMu      sync.Mutex
	errSamples []string

	// Samples of the server (when PID is set) and of this process.
	before, cpuFrom, after samples
	began, ended           time.Time // the measured phase

	// The scale mode's ECHO latencies and server CPU time over its
	// measured phases.
	scaleTotal *histogram
	scaleCPU   time.Duration
}

type samples struct {
	server, self ProcSample
}

// shard is one of the latency histograms; connections share them so that
// thousands of connections do not need thousands of histograms.
type shard struct {
	mu sync.Mutex
	h  *histogram
	_  [40]byte // keep shards on separate cache lines
}

func (r *run) record(conn int, d time.Duration) {
	s := &r.shards[conn%len(r.shards)]
	s.mu.Lock()
	s.h.record(d)
	s.mu.Unlock()
}

// maxErrorSamples bounds the distinct error messages a report keeps.
const maxErrorSamples = 5

func (r *run) fail(err error) {
	r.b.errs.Add(1)
	msg := err.Error()
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if len(r.errSamples) < maxErrorSamples && !contains(r.errSamples, msg) {
		r.errSamples = append(r.errSamples, msg)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// take reserves up to n operations of Count and returns how many it got; 0
// means the count is used up.
func (r *run) take(n int) int {
	left := r.remaining.Add(-int64(n))
	switch {
	case left >= 0:
		return n
	case left > -int64(n):
		return n + int(left)
	}
	return 0
}

// more reports whether the measured phase goes on.
func (r *run) more(ctx context.Context) bool {
	return ctx.Err() == nil && !r.stop.Load()
}

// sample reads the server's and this process's CPU time and memory into s.
func (r *run) sample(s *samples) error {
	if r.o.PID > 0 {
		var err error
		if s.server, err = ReadProc(r.o.PID); err != nil {
			return fmt.Errorf("sampling the server: %w", err)
		}
	}
	if runtime.GOOS == "linux" {
		// Best effort: the client's own CPU is a side note.
		s.self, _ = ReadProc(os.Getpid())
	}
	return nil
}

// dial opens one connection under the dial concurrency bound and counts
// its handshake.
func (r *run) dial(ctx context.Context) (*client.Conn, error) {
	select {
	case r.dialSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-r.dialSem }()
	c, err := client.Dial(ctx, r.o.Addr, r.b.clientOpt)
	if err != nil {
		return nil, err
	}
	if cs, ok := c.ConnectionState(); ok {
		r.handshakes.Add(1)
		if cs.DidResume {
			r.resumed.Add(1)
		}
	}
	return c, nil
}

// exchange sends n ECHOs in one write and checks their n replies.
func (r *run) exchange(c *client.Conn, n int) error {
	for range n {
		if err := c.Send(proto.Echo, r.b.payload); err != nil {
			return err
		}
	}
	for i := range n {
		f, err := c.Receive()
		if err != nil {
			return fmt.Errorf("reading reply %d of %d: %w", i+1, n, err)
		}
		if f.Type != proto.Echo || !bytes.Equal(f.Body, r.b.payload) {
			if f.Type == proto.Error {
				return fmt.Errorf("the server refused an ECHO: %q", f.Body)
			}
			return fmt.Errorf("reply %d of %d: got a %v reply of %d bytes, want the ECHO of %d bytes back", i+1, n, f.Type, len(f.Body), len(r.b.payload))
		}
	}
	return nil
}

// probe makes the first connection, retrying for up to Wait, sends one
// ECHO and notes the TLS parameters.
func (r *run) probe(ctx context.Context) error {
	deadline := time.Now().Add(r.o.Wait)
	for {
		c, err := client.Dial(ctx, r.o.Addr, r.b.clientOpt)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(r.o.Timeout))
			err = r.exchange(c, 1)
			if cs, ok := c.ConnectionState(); ok {
				r.report.TLSVersion = tls.VersionName(cs.Version)
				if r.o.DTLS != nil {
					r.report.TLSVersion = "DTLS 1.2"
				}
				r.report.CipherSuite = tls.CipherSuiteName(cs.CipherSuite)
				if cs.CurveID != 0 {
					r.report.Group = cs.CurveID.String()
				}
			}
			c.Close()
			if err == nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%w at %s: %w", ErrNoConnection, r.o.Addr, err)
		}
		// Polling is what waiting for a server to come up means here.
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// beginMeasure samples the server and starts the clock of the measured
// phase.
func (r *run) beginMeasure(phase string) (stopTimer func(), err error) {
	if err := r.sample(&r.cpuFrom); err != nil {
		return nil, err
	}
	r.began = time.Now()
	r.b.start.Store(r.began.UnixNano())
	r.b.phase.Store(phase)
	t := time.AfterFunc(r.o.Duration, func() { r.stop.Store(true) })
	return func() { t.Stop() }, nil
}

func (r *run) endMeasure() error {
	r.ended = time.Now()
	return r.sample(&r.after)
}

// interruptOnDone makes blocked I/O on c return when ctx ends, through a
// deadline in the past.
func interruptOnDone(ctx context.Context, c *client.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
}

// backoff waits after a failed connection before the next try, so that a
// server that went away is not hammered: 10 ms doubling to 1 s.
func backoff(ctx context.Context, d *time.Duration) {
	*d = min(max(*d*2, 10*time.Millisecond), time.Second)
	select {
	case <-time.After(*d):
	case <-ctx.Done():
	}
}

// handshakeLoop runs the handshake mode: Conns workers, each dialing,
// echoing once and closing, over and over.
func (r *run) handshakeLoop(ctx context.Context) error {
	r.handshakes.Store(0)
	r.resumed.Store(0)
	stopTimer, err := r.beginMeasure("running")
	if err != nil {
		return err
	}
	defer stopTimer()
	var wg sync.WaitGroup
	for w := range r.o.Conns {
		wg.Go(func() {
			var pause time.Duration
			for r.more(ctx) && r.take(1) == 1 {
				t0 := time.Now()
				c, err := r.dial(ctx)
				if err == nil {
					_ = c.SetDeadline(t0.Add(r.o.Timeout))
					stop := interruptOnDone(ctx, c)
					err = r.exchange(c, 1)
					stop()
					c.Close()
				}
				if err != nil {
					if ctx.Err() == nil {
						r.fail(err)
						backoff(ctx, &pause)
					}
					continue
				}
				pause = 0
				r.record(w, time.Since(t0))
				r.b.ops.Add(1)
			}
		})
	}
	wg.Wait()
	return r.endMeasure()
}

// exchanges runs the echo and pipeline modes: it opens Conns connections,
// then each sends Depth ECHOs at once and reads their replies, over and
// over.
func (r *run) exchanges(ctx context.Context) error {
	r.b.phase.Store("opening")
	conns := make([]*client.Conn, r.o.Conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			c, err := r.dial(ctx)
			if err != nil {
				if ctx.Err() == nil {
					r.fail(err)
				}
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if opened := countOpen(conns); opened == 0 {
		return fmt.Errorf("%w: none of %d connections to %s opened: %s", ErrNoConnection, len(conns), r.o.Addr, r.errSamples[0])
	}
	stopTimer, err := r.beginMeasure("running")
	if err != nil {
		return err
	}
	defer stopTimer()
	// A stuck exchange is cut Timeout after the end of Duration.
	deadline := r.began.Add(r.o.Duration + r.o.Timeout)
	for i := range conns {
		wg.Go(func() {
			var pause time.Duration
			c := conns[i]
			for r.more(ctx) {
				if c == nil {
					var err error
					if c, err = r.dial(ctx); err != nil {
						if ctx.Err() == nil {
							r.fail(err)
							backoff(ctx, &pause)
						}
						continue
					}
					conns[i] = c
				}
				n := r.take(r.o.Depth)
				if n == 0 {
					return
				}
				_ = c.SetDeadline(deadline)
				stop := interruptOnDone(ctx, c)
				t0 := time.Now()
				err := r.exchange(c, n)
				d := time.Since(t0)
				stop()
				if err != nil {
					c.Close()
					c, conns[i] = nil, nil
					if ctx.Err() == nil {
						r.fail(err)
						backoff(ctx, &pause)
					}
					continue
				}
				pause = 0
				r.record(i, d)
				r.b.ops.Add(int64(n))
			}
		})
	}
	wg.Wait()
	return r.endMeasure()
}

func countOpen(conns []*client.Conn) int {
	n := 0
	for _, c := range conns {
		if c != nil {
			n++
		}
	}
	return n
}

// idle runs the idle mode: it opens Conns connections, DialConcurrency at
// a time, sends one ECHO on each, samples the server Settle after the last
// one opened and holds them all for Duration.
func (r *run) idle(ctx context.Context) error {
	r.handshakes.Store(0)
	r.resumed.Store(0)
	stopTimer, err := r.beginMeasure("opening")
	if err != nil {
		return err
	}
	stopTimer() // Duration counts from the last connection, below.
	conns := make([]*client.Conn, r.o.Conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(r.o.DialConcurrency, r.o.Conns) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				c, err := r.dial(ctx)
				if err == nil {
					_ = c.SetDeadline(t0.Add(r.o.Timeout))
					err = r.exchange(c, 1)
					_ = c.SetDeadline(time.Time{})
					if err != nil {
						c.Close()
					}
				}
				if err != nil {
					if ctx.Err() == nil {
						r.fail(err)
					}
					continue
				}
				conns[i] = c
				r.record(i, time.Since(t0))
				r.b.ops.Add(1)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.ended = time.Now() // the opening phase, for ops/s
	r.report.Held = countOpen(conns)
	if r.report.Held == 0 {
		return fmt.Errorf("%w: none of %d connections to %s opened: %s", ErrNoConnection, len(conns), r.o.Addr, r.errSamples[0])
	}
	r.b.phase.Store("holding")
	last := r.ended
	if !sleep(ctx, time.Until(last.Add(r.o.Settle))) {
		return ctx.Err()
	}
	if err := r.sample(&r.after); err != nil {
		return err
	}
	if !sleep(ctx, time.Until(last.Add(max(r.o.Duration, r.o.Settle)))) {
		return ctx.Err()
	}
	return nil
}

// sleep waits d or until ctx ends, and reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
