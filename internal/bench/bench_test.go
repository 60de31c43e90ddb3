package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestModes(t *testing.T) {
	transports := []struct {
		name      string
		plaintext bool
		version   uint16
	}{
		{"TLS1.2", false, tls.VersionTLS12},
		{"TLS1.3", false, tls.VersionTLS13},
		{"plaintext", true, 0},
	}
	modes := []struct {
		name    string
		opts    Options
		wantOps int64
		latOf   string
	}{
		{"handshake", Options{Mode: ModeHandshake, Conns: 4, Count: 40}, 40, "handshake+echo"},
		{"echo", Options{Mode: ModeEcho, Conns: 5, Count: 500}, 500, "echo"},
		{"echo-4KiB", Options{Mode: ModeEcho, Conns: 2, Size: 4096, Count: 50}, 50, "echo"},
		// 330 is not a multiple of 4 × 16: the last batch is partial.
		{"pipeline", Options{Mode: ModePipeline, Conns: 4, Depth: 16, Count: 330}, 330, "batch"},
		{"idle", Options{Mode: ModeIdle, Conns: 30, Settle: time.Millisecond, Duration: time.Millisecond}, 30, "open"},
	}
	for _, tr := range transports {
		ts := mustServe(t, tr.plaintext)
		for _, m := range modes {
			t.Run(tr.name+"/"+m.name, func(t *testing.T) {
				o := m.opts
				o.Addr = ts.addr
				o.Duration = max(o.Duration, time.Minute) // the count ends the run
				if m.opts.Duration != 0 {
					o.Duration = m.opts.Duration
				}
				if ts.clientTLS != nil {
					o.TLSConfig = ts.clientTLS.Clone()
					o.TLSConfig.MinVersion, o.TLSConfig.MaxVersion = tr.version, tr.version
				}
				if runtime.GOOS == "linux" {
					o.PID = os.Getpid()
				}
				rep := mustRun(t, mustNew(t, o))
				if rep.Errors != 0 {
					t.Fatalf("got %d errors (%q), want 0", rep.Errors, rep.ErrorSamples)
				}
				if rep.Ops != m.wantOps {
					t.Errorf("got %d ops, want %d", rep.Ops, m.wantOps)
				}
				if rep.Latency.Of != m.latOf {
					t.Errorf("got latency of %q, want %q", rep.Latency.Of, m.latOf)
				}
				wantTimed := uint64(m.wantOps)
				if m.opts.Mode == ModePipeline {
					wantTimed = uint64((m.wantOps + int64(m.opts.Depth) - 1) / int64(m.opts.Depth))
				}
				if rep.Latency.Count != wantTimed {
					t.Errorf("got %d latencies, want %d", rep.Latency.Count, wantTimed)
				}
				if !(rep.Latency.P50 > 0 && rep.Latency.P50 <= rep.Latency.P99 && rep.Latency.P99 <= rep.Latency.P999 && rep.Latency.P999 <= rep.Latency.Max) {
					t.Errorf("latency quantiles out of order: %+v", rep.Latency)
				}
				if rep.OpsPerSecond <= 0 || rep.Elapsed <= 0 {
					t.Errorf("got %v ops/s over %v s, want both positive", rep.OpsPerSecond, rep.Elapsed)
				}
				wantHandshakes := map[Mode]int64{ModeHandshake: m.wantOps, ModeEcho: int64(o.Conns), ModePipeline: int64(o.Conns), ModeIdle: int64(o.Conns)}[o.Mode]
				if tr.plaintext {
					wantHandshakes = 0
					if rep.TLS || rep.TLSVersion != "" {
						t.Errorf("plaintext run reports TLS %v %q", rep.TLS, rep.TLSVersion)
					}
				} else if want := tls.VersionName(tr.version); rep.TLSVersion != want || rep.CipherSuite == "" || rep.Group != "X25519" {
					t.Errorf("got %q %q %q, want %s with a suite and X25519", rep.TLSVersion, rep.CipherSuite, rep.Group, want)
				}
				if rep.Handshakes != wantHandshakes {
					t.Errorf("got %d handshakes, want %d", rep.Handshakes, wantHandshakes)
				}
				if rep.Resumed != 0 {
					t.Errorf("got %v resumed without Resume, want 0", rep.Resumed)
				}
				if o.Mode == ModeIdle && rep.Held != o.Conns {
					t.Errorf("held %d connections, want %d", rep.Held, o.Conns)
				}
				if runtime.GOOS == "linux" {
					s := rep.Server
					if s == nil || s.PID != o.PID || s.RSSBefore <= 0 || s.RSSAfter <= 0 || s.CPU < 0 {
						t.Errorf("got server stats %+v, want this process's", s)
					} else if s.CPU > 0 && s.OpsPerCPUSecond != float64(rep.Ops)/s.CPU {
						t.Errorf("got %v ops per CPU-second, want %d / %v", s.OpsPerCPUSecond, rep.Ops, s.CPU)
					}
				}
			})
		}
	}
}

func TestResume(t *testing.T) {
	ts := mustServe(t, false)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			cfg := ts.clientTLS.Clone()
			cfg.MinVersion, cfg.MaxVersion = v, v
			rep := mustRun(t, mustNew(t, Options{Mode: ModeHandshake, Addr: ts.addr, TLSConfig: cfg, Resume: true, Conns: 2, Count: 20}))
			if rep.Errors != 0 {
				t.Fatalf("got %d errors (%q), want 0", rep.Errors, rep.ErrorSamples)
			}
			// The probe connection primes the cache, so every measured
			// handshake resumes.
			if rep.Handshakes != 20 || rep.Resumed != 1 {
				t.Errorf("got %d handshakes, %v resumed; want 20, all resumed", rep.Handshakes, rep.Resumed)
			}
		})
	}
}

// TestDurationBound checks that a run with a large count ends when its
// duration is up.
func TestDurationBound(t *testing.T) {
	ts := mustServe(t, true)
	began := time.Now()
	rep := mustRun(t, mustNew(t, Options{Mode: ModeEcho, Addr: ts.addr, Conns: 2, Duration: 200 * time.Millisecond}))
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("a 200 ms run took %v", took)
	}
	if rep.Ops == 0 || rep.Ops >= DefaultCount {
		t.Errorf("got %d ops, want some and fewer than the count", rep.Ops)
	}
	if rep.Elapsed < 0.2 {
		t.Errorf("measured %v s, want at least the 0.2 s duration", rep.Elapsed)
	}
}

func TestNoServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = mustNew(t, Options{Mode: ModeEcho, Addr: addr, Wait: 100 * time.Millisecond}).Run(context.Background())
	if !errors.Is(err, ErrNoConnection) || !strings.Contains(err.Error(), addr) {
		t.Errorf("got %v, want ErrNoConnection naming %s", err, addr)
	}
}

// TestServerGoesAway checks that failures during the run are counted, not
// returned, and that a dead server does not make the run spin.
func TestServerGoesAway(t *testing.T) {
	// A plaintext server that answers the probe's ECHO and then closes
	// every connection it accepts at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for first := true; ; first = false {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if first {
				buf := make([]byte, 8+DefaultSize)
				if _, err := io.ReadFull(c, buf); err == nil {
					c.Write(buf)
				}
			}
			c.Close()
		}
	}()
	rep := mustRun(t, mustNew(t, Options{Mode: ModeEcho, Addr: ln.Addr().String(), Conns: 2, Duration: 300 * time.Millisecond}))
	if rep.Errors == 0 || len(rep.ErrorSamples) == 0 {
		t.Errorf("got %d errors %q, want some", rep.Errors, rep.ErrorSamples)
	}
	if rep.Errors > 200 {
		t.Errorf("got %d errors in 300 ms: the workers do not back off", rep.Errors)
	}
	if rep.Ops != 0 {
		t.Errorf("got %d ops from a server that answers none, want 0", rep.Ops)
	}
}

func TestCancel(t *testing.T) {
	ts := mustServe(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	b := mustNew(t, Options{Mode: ModeEcho, Addr: ts.addr, Conns: 2, Duration: time.Hour})
	done := make(chan error, 1)
	go func() { _, err := b.Run(ctx); done <- err }()
	for b.Progress().Ops == 0 {
		runtime.Gosched()
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	if _, err := b.Run(context.Background()); err == nil {
		t.Error("a second Run succeeded, want an error")
	}
}

func TestOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no mode", Options{Addr: "127.0.0.1:1"}, "no mode"},
		{"bad mode", Options{Mode: "flood", Addr: "127.0.0.1:1"}, `unknown mode "flood"`},
		{"no port", Options{Mode: ModeEcho, Addr: "127.0.0.1"}, "want HOST:PORT"},
		{"resume in plaintext", Options{Mode: ModeHandshake, Addr: "127.0.0.1:1", Resume: true}, "needs TLS"},
		{"depth outside pipeline", Options{Mode: ModeEcho, Addr: "127.0.0.1:1", Depth: 8}, "pipeline mode"},
		{"negative conns", Options{Mode: ModeEcho, Addr: "127.0.0.1:1", Conns: -1}, "connections -1"},
		{"huge batch", Options{Mode: ModePipeline, Addr: "127.0.0.1:1", Depth: 1000, Size: 4096}, "lower the depth"},
		{"negative duration", Options{Mode: ModeEcho, Addr: "127.0.0.1:1", Duration: -time.Second}, "duration -1s"},
		{"negative count", Options{Mode: ModeEcho, Addr: "127.0.0.1:1", Count: -5}, "count -5"},
		{"over the fd limit", Options{Mode: ModeIdle, Addr: "127.0.0.1:1", Conns: 1 << 30}, "file descriptors"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Conns == 1<<30 && fdLimit() == 0 {
				t.Skip("this system does not say its open-file limit")
			}
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestReportJSONAndText(t *testing.T) {
	rep := &Report{
		Mode: ModeIdle, Addr: "127.0.0.1:4242", TLS: true, Conns: 15000, Depth: 1, Size: 64,
		Elapsed: 12.5, Ops: 15000, OpsPerSecond: 1200, Handshakes: 15000, Held: 15000,
		TLSVersion: "TLS 1.3", CipherSuite: "TLS_AES_128_GCM_SHA256", Group: "X25519MLKEM768",
		Latency: Latency{Of: "open", Count: 15000, P50: 900, P99: 4000, P999: 12000, Max: 15000, Mean: 1000},
		Server:  &ServerStats{PID: 7, CPU: 10, OpsPerCPUSecond: 1500, RSSBefore: 10 << 20, RSSAfter: 10<<20 + 15000*9*1024, RSSPerConn: 9 * 1024},
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"idle: 15000 connections, one ECHO of 64 bytes each, then held",
		"TLS 1.3 TLS_AES_128_GCM_SHA256 X25519MLKEM768",
		"15,000 of 15000 connections",
		"p50 900µs  p99 4.00ms  p99.9 12.0ms",
		"1,500 per CPU-second (handshake)",
		"9.0 KiB per connection",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Server == nil || back.Server.RSSPerConn != rep.Server.RSSPerConn || back.Latency != rep.Latency {
		t.Errorf("JSON round trip: got %+v, want %+v", back, rep)
	}
	for _, key := range []string{`"ops_per_s"`, `"p999_us"`, `"ops_per_cpu_s"`, `"rss_per_conn_bytes"`, `"resumed_fraction"`} {
		if !bytes.Contains(data, []byte(key)) {
			t.Errorf("JSON lacks %s: %s", key, data)
		}
	}
}
