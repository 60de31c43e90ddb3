package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/bench"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{9, 1, 5}, 5},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// fake makes a result with the given per-CPU-second rate, p50 and RSS per
// connection.
func fake(id, srv string, run int, mode bench.Mode, perCPU, p50, rss float64, held int) result {
	return result{Scenario: id, Server: srv, Run: run, Report: &bench.Report{
		Mode: mode, TLS: true, TLSVersion: "TLS 1.3", Group: "X25519MLKEM768", Held: held, Resumed: 1,
		OpsPerSecond: perCPU / 2, Latency: bench.Latency{P50: p50},
		Server: &bench.ServerStats{OpsPerCPUSecond: perCPU, CPU: 1, RSSPerConn: rss},
	}}
}

func TestTargets(t *testing.T) {
	c := &config{engines: []string{"epoll", "goroutine"}, runs: 3, duration: 10 * time.Second}
	var results []result
	add := func(id string, mode bench.Mode, epoll, goroutine, ref float64) {
		for run := 1; run <= 3; run++ {
			// Runs vary; the median is the middle one.
			f := []float64{0.9, 1, 1.2}[run-1]
			held := map[string]int{idle15k64: 15000, idle15k4096: 15000, idle19k: 19000}[id]
			results = append(results,
				fake(id, "sc-server/epoll", run, mode, epoll*f, epoll*f, epoll*f, held),
				fake(id, "sc-server/goroutine", run, mode, goroutine*f, goroutine*f, goroutine*f, held),
				fake(id, "refserver", run, mode, ref*f, ref*f, ref*f, held))
		}
	}
	add(hsP256, bench.ModeHandshake, 2650, 2700, 2700)   // 98%: met
	add(hsRSA, bench.ModeHandshake, 150, 157, 157)       // 95.5%: not met for epoll
	add(hsRSAResume, bench.ModeHandshake, 1600, 2000, 0) // 10.7×, 12.7×
	add(pipe50, bench.ModePipeline, 4e6, 2e6, 2e5)       // 20×, 10×
	add(pipe50Plain, bench.ModePipeline, 4.4e6, 2.5e6, 0)
	add(echo50, bench.ModeEcho, 118e3, 120e3, 121e3) // vs refserver: 97.5%, 99.2%
	add(echo1, bench.ModeEcho, 24, 23, 0)            // p50 µs: 104% of goroutine
	add(idle15k64, bench.ModeIdle, 9*1024, 25*1024, 27*1024)
	add(idle15k4096, bench.ModeIdle, 13*1024, 27*1024, 30*1024)
	add(idle19k, bench.ModeIdle, 9*1024, 25*1024, 0)
	d := &document{config: c, scenarios: fullScenarios(c.duration), results: results, commands: map[string]*commands{}}
	var buf bytes.Buffer
	d.writeTargets(&buf)
	rows := map[string]string{}
	for _, line := range strings.Split(buf.String(), "\n") {
		cells := strings.Split(line, " | ")
		if len(cells) == 3 {
			rows[strings.TrimPrefix(cells[0], "| ")] = strings.TrimSuffix(cells[2], " |")
		}
	}
	tests := []struct{ prefix, want string }{
		{"15,000 idle TLS 1.3 connections held by the epoll engine at ≤ 10 KB", "met"},
		{"15,000 idle TLS 1.3 connections held by the epoll engine at ≤ 12 KB", "**not met**"},
		{"19,000 concurrent", "met"},
		{"Pipelined ECHO (50", "met"},
		{"Pipelined ECHO: TLS within 15%", "**not met**"}, // goroutine 80%
		{"Ping-pong ECHO, 50", "met"},                     // 98%
		{"Ping-pong ECHO, one", "met"},                    // 104%
		{"Ping-pong ECHO at bare", "**not met**"},         // epoll 97.5% of refserver
		{"Full handshakes, TLS 1.3, P-256", "met"},
		{"Full handshakes, TLS 1.3, RSA-4096", "**not met**"},
		{"TLS 1.3 resumption", "met"},
	}
	for _, tt := range tests {
		found := false
		for target, got := range rows {
			if strings.HasPrefix(target, tt.prefix) {
				found = true
				if got != tt.want {
					t.Errorf("%s…: got %q, want %q", tt.prefix, got, tt.want)
				}
			}
		}
		if !found {
			t.Errorf("no target row starting %q in:\n%s", tt.prefix, buf.String())
		}
	}

	// Without the epoll engine, its targets are not measured, and those
	// of both engines say which one passed.
	c.engines = []string{"goroutine"}
	var kept []result
	for _, r := range results {
		if r.Server != "sc-server/epoll" {
			kept = append(kept, r)
		}
	}
	d.results = kept
	buf.Reset()
	d.writeTargets(&buf)
	for _, want := range []string{
		"epoll: not in this build<br>for reference, goroutine: 25.0 KiB<br>refserver: 27.0 KiB | not measured |",
		"goroutine: 2,000,000 per CPU-s = 10.0× refserver's 200,000 | met by goroutine; not measured on the rest |",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("targets lack %q:\n%s", want, buf.String())
		}
	}
}

func TestWriteDocument(t *testing.T) {
	c := &config{engines: []string{"goroutine"}, runs: 1, duration: time.Second, binDir: "/tmp/x/bin",
		certDirs: map[certKind]string{certP256: "/tmp/x/p256"}}
	sc := fullScenarios(time.Second)
	d := &document{config: c, scenarios: sc[:1], results: []result{
		fake(hsP256, "sc-server/goroutine", 1, bench.ModeHandshake, 2500, 4000, 0, 0),
		{Scenario: hsP256, Server: "refserver", Run: 1, Err: "the server exited | badly"},
	}, commands: map[string]*commands{hsP256: {
		server: map[string]string{"sc-server/goroutine": "/tmp/x/bin/sc-server --listen 127.0.0.1:40123 --cert /tmp/x/p256/server.crt"},
		bench:  "/tmp/x/bin/sc-client bench handshake --server 127.0.0.1:40123 --pid 4321",
	}}}
	var buf bytes.Buffer
	d.write(&buf)
	for _, want := range []string{
		"## Machine", "## Targets (issues 6 and 13)", "### Handshakes",
		"| sc-server/goroutine | TLS 1.3 X25519MLKEM768 | 1,250 | **2,500** |",
		"| refserver | failed: the server exited \\| badly |",
		"sc-server --listen 127.0.0.1:PORT --cert certs-p256/server.crt",
		"sc-client bench handshake --server 127.0.0.1:PORT --pid PID",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("document lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestCheckSmoke(t *testing.T) {
	good := fake("smoke-echo", "refserver", 1, bench.ModeEcho, 1000, 10, 0, 0)
	good.Report.Ops = 400
	good.Report.Server.RSSAfter = 1 << 20
	if err := checkSmoke([]result{good}); err != nil {
		t.Errorf("a good run failed the smoke check: %v", err)
	}
	bad := good
	rep := *good.Report
	rep.Errors = 2
	bad.Report = &rep
	for _, r := range []result{bad, {Scenario: "smoke-idle", Server: "refserver", Err: "no JSON report"}} {
		if err := checkSmoke([]result{good, r}); err == nil {
			t.Errorf("run %+v passed the smoke check", r)
		}
	}
}
