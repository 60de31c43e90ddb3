package soak

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func mustResolve(t *testing.T, o Options) Options {
	t.Helper()
	o.Bin, o.Dir = "bin", "dir"
	if o.Engine == "" {
		o.Engine = "epoll"
	}
	r, err := o.resolve()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResolveShortAndFull(t *testing.T) {
	full := mustResolve(t, Options{})
	if full.Duration != time.Hour || full.Conns != 15000 || full.SteadyAt != 5*time.Minute || full.RSSGrowth != 0.10 || full.GoroutineDrift != 200 {
		t.Errorf("full run defaults: %v, %d conns, steady at %v, RSS %.2f, goroutines ±%d; want 1h, 15000, 5m, 0.10, 200",
			full.Duration, full.Conns, full.SteadyAt, full.RSSGrowth, full.GoroutineDrift)
	}
	short := mustResolve(t, Options{Duration: 2 * time.Minute, Conns: 2000, Engine: "goroutine"})
	// 1% of 2000 held, 10 new a second, 8 for a reload.
	if short.SteadyAt != 30*time.Second || short.RSSGrowth != 0.15 || short.GoroutineDrift != 38 {
		t.Errorf("short run: steady at %v, RSS %.2f, goroutines ±%d; want 30s, 0.15, 38 (1%% of 2000 + 10 new a second + 8)", short.SteadyAt, short.RSSGrowth, short.GoroutineDrift)
	}
	// A small run still allows for the connections in flight: 40 held
	// connections once failed on two new ones alive at the last sample.
	if small := mustResolve(t, Options{Duration: time.Minute, Conns: 40, Engine: "goroutine"}); small.GoroutineDrift < int(small.NewRate) {
		t.Errorf("40 connections: goroutines ±%d, less than the %v new connections a second", small.GoroutineDrift, small.NewRate)
	}
	for _, tt := range []struct {
		name string
		o    Options
		want string
	}{
		{"steady after the end", Options{Duration: time.Minute, SteadyAt: time.Minute}, "no sample after it"},
		{"odd duration", Options{Duration: 65 * time.Second, SteadyAt: 30 * time.Second}, "whole multiples"},
		{"no player", Options{CAEvery: 1}, "leaves no player"},
		{"negative", Options{Conns: -1}, "connections -1 is negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Bin, tt.o.Dir, tt.o.Engine = "bin", "dir", "epoll"
			if _, err := tt.o.resolve(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestCSVRoundTrip(t *testing.T) {
	in := []Sample{
		{T: 0, RSS: 1 << 20, FDs: 40, Goroutines: 12},
		{T: 10, Held: 2000, RSS: 30 << 20, HeapInuse: 9 << 20, Goroutines: 2040, FDs: 2045, GCCycles: 3, GCPauseMs: 0.25,
			GCPauseMaxMs: 0.125, CPU: 0.87, HBCount: 2000, HBP50: 0.3, HBP99: 4.5, HBMax: 9.75, PPCount: 20000, PPP99: 1.5,
			NewCount: 100, NewP99: 12.5, Errors: 1, Reconnects: 1, Lockouts: 1, Rotations: 2},
	}
	var buf bytes.Buffer
	if err := WriteCSVHeader(&buf); err != nil {
		t.Fatal(err)
	}
	for _, s := range in {
		if err := s.WriteCSV(&buf); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.HasPrefix(buf.String(), "t_s,held_conns,rss_bytes,") {
		t.Errorf("header: %q", strings.SplitN(buf.String(), "\n", 2)[0])
	}
	out, err := ReadCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) || out[0] != in[0] || out[1] != in[1] {
		t.Errorf("got  %+v\nwant %+v", out, in)
	}
	if _, err := ReadCSV(strings.NewReader("a,b\n1,2\n")); err == nil || !strings.Contains(err.Error(), "lacks t_s") {
		t.Errorf("not a soak CSV: got %v", err)
	}
	var bad bytes.Buffer
	_ = WriteCSVHeader(&bad)
	_ = in[1].WriteCSV(&bad)
	broken := strings.Replace(bad.String(), "2000,", "2k,", 1)
	if _, err := ReadCSV(strings.NewReader(broken)); err == nil || !strings.Contains(err.Error(), `line 2, column held_conns: "2k"`) {
		t.Errorf("bad value: got %v", err)
	}
}

// passingRun is a two-minute run that meets every criterion.
func passingRun() (Options, *Summary, []Sample) {
	o := Options{Bin: "b", Dir: "d", Engine: "epoll", Duration: 2 * time.Minute, Conns: 2000, RotateEvery: 15 * time.Second}
	o, _ = o.resolve()
	var samples []Sample
	for k := 0; k <= 12; k++ {
		s := Sample{T: float64(10 * k), Held: 2000, RSS: 40 << 20, FDs: 2050, Goroutines: 30}
		if k > 0 {
			s.HBCount, s.HBP99 = 2000, 3
		}
		if k > 0 && k%2 == 0 {
			s.GCCycles = 1 // a collection every 20 s: the third at 60 s
		}
		samples = append(samples, s)
	}
	sum := &Summary{}
	for i := range 7 {
		sum.Rotations = append(sum.Rotations, Rotation{T: float64(15 * (i + 1)), Kind: Kinds()[i%4], Serial: "aa"})
	}
	return o, sum, samples
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name   string
		change func(o *Options, s *Summary, samples []Sample)
		failed string // the check that must fail; "" for none
	}{
		{"passing", func(*Options, *Summary, []Sample) {}, ""},
		{"client error", func(_ *Options, s *Summary, _ []Sample) { s.Totals.Errors = 1 }, "no failed handshake or request"},
		{"server handshake failure", func(_ *Options, s *Summary, _ []Sample) { s.Totals.ServerFailedHandshakes = 1 }, "no failed handshake or request"},
		{"server error close", func(_ *Options, s *Summary, _ []Sample) { s.Totals.ServerErrorCloses = 2 }, "no failed handshake or request"},
		{"lockout", func(_ *Options, s *Summary, _ []Sample) { s.Totals.Lockouts = 1 }, "no client locked out"},
		{"rotation failed", func(_ *Options, s *Summary, _ []Sample) { s.Rotations[3].Err = "not served" }, "rotations"},
		{"a kind missing", func(_ *Options, s *Summary, _ []Sample) { s.Rotations = s.Rotations[:3] }, "rotations"},
		{"RSS up 15% in a short run", func(_ *Options, _ *Summary, x []Sample) { x[12].RSS = 40 << 20 * 115 / 100 }, ""},
		{"RSS up 16% in a short run", func(_ *Options, _ *Summary, x []Sample) { x[12].RSS = 40 << 20 * 116 / 100 }, "RSS growth"},
		{"RSS growth before the steady state is not counted", func(_ *Options, _ *Summary, x []Sample) { x[2].RSS = 20 << 20 }, ""},
		{"RSS rising until the third GC cycle is warm-up", func(_ *Options, _ *Summary, x []Sample) {
			x[3].RSS, x[4].RSS, x[5].RSS = 34<<20, 36<<20, 38<<20 // 40 MiB is 17.6% over 34
		}, ""},
		{"RSS up 16% from the third GC cycle", func(_ *Options, _ *Summary, x []Sample) {
			x[3].RSS, x[4].RSS, x[5].RSS = 34<<20, 36<<20, 38<<20
			x[12].RSS = 40 << 20 * 116 / 100
		}, "RSS growth"},
		{"RSS rising until the third GC cycle, counted from 30s", func(o *Options, _ *Summary, x []Sample) {
			o.SteadyGCCycles = -1
			x[3].RSS = 34 << 20
		}, "RSS growth"},
		{"two GC cycles in the whole run", func(_ *Options, _ *Summary, x []Sample) {
			for i := 6; i < len(x); i++ {
				x[i].GCCycles = 0
			}
		}, "RSS growth"},
		{"RSS up 11% in a full run's terms", func(o *Options, _ *Summary, x []Sample) {
			o.RSSGrowth = 0.10
			x[12].RSS = 40 << 20 * 111 / 100
		}, "RSS growth"},
		{"50 more descriptors", func(_ *Options, _ *Summary, x []Sample) { x[12].FDs += 50 }, ""},
		{"51 fewer descriptors", func(_ *Options, _ *Summary, x []Sample) { x[12].FDs -= 51 }, "open descriptors"},
		{"201 more goroutines", func(_ *Options, _ *Summary, x []Sample) { x[12].Goroutines += 201 }, "goroutines"},
		{"one slow window", func(_ *Options, _ *Summary, x []Sample) { x[5].HBP99 = 50.5 }, "heartbeat ECHO p99"},
		{"p99 at the limit", func(_ *Options, _ *Summary, x []Sample) { x[5].HBP99 = 50 }, ""},
		{"no heartbeat at all", func(_ *Options, _ *Summary, x []Sample) {
			for i := range x {
				x[i].HBCount = 0
			}
		}, "heartbeat ECHO p99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, sum, samples := passingRun()
			tt.change(&o, sum, samples)
			Evaluate(o, sum, samples)
			var failed []string
			for _, c := range sum.Failures() {
				failed = append(failed, c.Name)
			}
			want := []string{}
			if tt.failed != "" {
				want = []string{tt.failed}
			}
			if strings.Join(failed, ";") != strings.Join(want, ";") || sum.Pass != (tt.failed == "") {
				t.Errorf("failed checks %q (pass %v), want %q\n%+v", failed, sum.Pass, want, sum.Checks)
			}
		})
	}
}

func TestEvaluateRunCutShort(t *testing.T) {
	o, sum, samples := passingRun()
	Evaluate(o, sum, samples[:6])
	if f := sum.Failures(); sum.Pass || len(f) != 1 || f[0].Name != "samples" {
		t.Errorf("got failures %+v, want the samples check alone", f)
	}
}

func TestEvaluateGoroutineEngine(t *testing.T) {
	o, sum, samples := passingRun()
	o.Engine, o.GoroutineDrift = "goroutine", 0
	o, _ = o.resolve()
	samples[12].Goroutines += o.GoroutineDrift + 1 // 20 (1% of 2,000) + 10 + 8
	Evaluate(o, sum, samples)
	if f := sum.Failures(); len(f) != 1 || f[0].Name != "goroutines" {
		t.Errorf("got failures %+v, want the goroutine check alone", f)
	}
}

// The RSS criterion's reference waits for SteadyGCCycles collections in
// windows that began once every held connection was open; the descriptor
// and goroutine criteria keep SteadyAt.
func TestEvaluateMemorySteadyState(t *testing.T) {
	for _, tt := range []struct {
		name   string
		open   float64 // seconds until every held connection was open
		cycles int     // SteadyGCCycles
		want   float64 // MemorySteady.T
		limit  string
	}{
		{"third collection at 60s", 5, 0, 60, "≤ 15% from 60s (the first sample after 30s with 3 GC cycles under the full load) to the end"},
		{"collections while opening do not count", 45, 0, 100, "from 100s"},
		{"SteadyAt alone", 45, -1, 30, "≤ 15% from 30s to the end"},
		{"one collection", 5, 1, 30, "≤ 15% from 30s to the end"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, sum, samples := passingRun()
			o.SteadyGCCycles = tt.cycles
			o, _ = o.resolve()
			sum.OpenSeconds = tt.open
			samples[1].GCCycles = 23 // the opening's collections
			Evaluate(o, sum, samples)
			if !sum.Pass || sum.MemorySteady.T != tt.want || sum.Steady.T != 30 {
				t.Errorf("pass %v, memory steady at %vs, steady at %vs; want a pass, %vs and 30s\n%+v", sum.Pass, sum.MemorySteady.T, sum.Steady.T, tt.want, sum.Checks)
			}
			for _, c := range sum.Checks {
				if c.Name == "RSS growth" && !strings.Contains(c.Limit, tt.limit) {
					t.Errorf("RSS growth limit %q, want it to say %q", c.Limit, tt.limit)
				}
			}
		})
	}
	o, sum, samples := passingRun()
	for i := range samples {
		samples[i].GCCycles = 0
	}
	samples[4].GCCycles, samples[6].GCCycles = 1, 1
	Evaluate(o, sum, samples)
	if f := sum.Failures(); len(f) != 1 || f[0].Name != "RSS growth" || !strings.Contains(f[0].Measured, "collected garbage 2 times under the full load") {
		t.Errorf("two collections: got failures %+v, want RSS growth saying so", f)
	}
}
