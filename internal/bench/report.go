package bench

import (
	"fmt"
	"io"
	"strings"
)

// Report is the result of a [Bench] run, as sc-client bench prints it and
// (with --json) as scripts read it. Rates are per second of wall time over
// the measured phase, or per CPU-second of the server.
type Report struct {
	// Mode, Addr, TLS, Resume, Conns, Depth and Size repeat the options
	// the run had, with defaults filled in.
	Mode   Mode   `json:"mode"`
	Addr   string `json:"server"`
	TLS    bool   `json:"tls"`
	Resume bool   `json:"resume"`
	Conns  int    `json:"conns"`
	Depth  int    `json:"depth"`
	Size   int    `json:"size"`
	// Interval is the scale mode's ECHO period per connection, as Go
	// writes a duration ("1s").
	Interval string `json:"interval,omitempty"`

	// Elapsed is the measured phase in seconds: the whole run in the
	// handshake, echo and pipeline modes (connections opened before it
	// are not counted), the opening of the connections in the idle mode.
	Elapsed float64 `json:"elapsed_s"`
	// Ops counts the operations that succeeded: handshakes (each with one
	// ECHO), ECHOs, or connections opened and held (idle).
	Ops          int64   `json:"ops"`
	OpsPerSecond float64 `json:"ops_per_s"`
	// Errors counts the operations and connections that failed;
	// ErrorSamples holds the first few distinct messages.
	Errors       int64    `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`

	// Latency is the distribution of operation times.
	Latency Latency `json:"latency"`

	// TLSVersion, CipherSuite and Group are what the first connection
	// negotiated (Group is empty for a TLS 1.2 suite without ECDHE, and
	// everything is empty in plaintext).
	TLSVersion  string `json:"tls_version,omitempty"`
	CipherSuite string `json:"cipher_suite,omitempty"`
	Group       string `json:"group,omitempty"`
	// Handshakes counts the TLS handshakes of the measured phase (and of
	// the connections opened for it), Resumed the fraction of them that
	// resumed a session.
	Handshakes int64   `json:"handshakes"`
	Resumed    float64 `json:"resumed_fraction"`

	// Held is the number of connections held open in the idle mode, and
	// at the end of the scale mode.
	Held int `json:"held,omitempty"`

	// Points are the scale mode's measurements, one per connection count.
	// The report's own figures then sum up its measured phases: Elapsed,
	// Ops and Latency are over the ECHOs of every point, Server.CPU their
	// CPU time, Server.RSSAfter and RSSPerConn the last point's.
	Points []ScalePoint `json:"points,omitempty"`

	// Server is what /proc said about the server process (Options.PID),
	// nil without it.
	Server *ServerStats `json:"server_process,omitempty"`
	// ClientCPU is the CPU time this process used over the measured phase,
	// in seconds (Linux only; 0 elsewhere).
	ClientCPU float64 `json:"client_cpu_s,omitempty"`
}

// Latency is a distribution of operation times, in microseconds, to about
// 1% (a log-linear histogram).
type Latency struct {
	// Of says what was timed: "handshake+echo" (dial, handshake, one ECHO
	// and its reply), "echo" (one round trip), "batch" (a pipelined
	// batch, from its write to its last reply) or "open" (idle: dial,
	// handshake and one ECHO).
	Of    string  `json:"of"`
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
	Mean  float64 `json:"mean_us"`
}

// ServerStats is the server's resource use over a run.
type ServerStats struct {
	PID int `json:"pid"`
	// CPU is the server's CPU time (user plus system) over the measured
	// phase, in seconds; in the idle mode, from before the first
	// connection to the memory sample. OpsPerCPUSecond is Ops / CPU.
	CPU             float64 `json:"cpu_s"`
	OpsPerCPUSecond float64 `json:"ops_per_cpu_s"`
	// RSSBefore is the server's resident memory before the run's
	// connections were opened (after one probe connection had come and
	// gone), RSSAfter with them open: at the end of the run, or in the
	// idle mode Settle after the last one opened. In bytes.
	RSSBefore int64 `json:"rss_before_bytes"`
	RSSAfter  int64 `json:"rss_after_bytes"`
	// RSSPerConn is (RSSAfter − RSSBefore) / the connections open at
	// RSSAfter, in bytes; 0 in the handshake mode, whose connections come
	// and go.
	RSSPerConn float64 `json:"rss_per_conn_bytes,omitempty"`
}

func (r *run) finish() *Report {
	rep := r.report
	rep.Elapsed = r.ended.Sub(r.began).Seconds()
	rep.Ops = r.b.ops.Load()
	rep.Errors = r.b.errs.Load()
	rep.ErrorSamples = r.errSamples
	if rep.Elapsed > 0 {
		rep.OpsPerSecond = float64(rep.Ops) / rep.Elapsed
	}
	h := newHistogram()
	for i := range r.shards {
		h.merge(r.shards[i].h)
	}
	of := map[Mode]string{ModeHandshake: "handshake+echo", ModeEcho: "echo", ModePipeline: "batch", ModeIdle: "open", ModeScale: "echo"}[r.o.Mode]
	if r.o.Mode == ModeScale {
		h = r.scaleTotal
		rep.Elapsed = 0
		for _, p := range rep.Points {
			rep.Elapsed += p.Seconds
		}
		if rep.Elapsed > 0 {
			rep.OpsPerSecond = float64(rep.Ops) / rep.Elapsed
		}
	}
	rep.Latency = latencyOf(h, of)
	rep.Handshakes = r.handshakes.Load()
	if rep.Handshakes > 0 {
		rep.Resumed = float64(r.resumed.Load()) / float64(rep.Handshakes)
	}
	if r.after.self.CPU > 0 {
		rep.ClientCPU = (r.after.self.CPU - r.cpuFrom.self.CPU).Seconds()
	}
	if r.o.PID > 0 {
		s := &ServerStats{
			PID:       r.o.PID,
			CPU:       (r.after.server.CPU - r.cpuFrom.server.CPU).Seconds(),
			RSSBefore: r.before.server.RSS,
			RSSAfter:  r.after.server.RSS,
		}
		if r.o.Mode == ModeScale {
			s.CPU = r.scaleCPU.Seconds()
		}
		if s.CPU > 0 {
			s.OpsPerCPUSecond = float64(rep.Ops) / s.CPU
		}
		open := 0
		switch r.o.Mode {
		case ModeEcho, ModePipeline:
			open = rep.Conns
		case ModeIdle, ModeScale:
			open = rep.Held
		}
		if open > 0 {
			s.RSSPerConn = float64(s.RSSAfter-s.RSSBefore) / float64(open)
		}
		rep.Server = s
	}
	return rep
}

// WriteText writes the report for people, one aspect a line.
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-11s %s\n", label, fmt.Sprintf(format, args...))
	}
	line("mode", "%s", rep.describe())
	transport := "plaintext"
	if rep.TLS {
		transport = strings.TrimSpace(fmt.Sprintf("%s %s %s", rep.TLSVersion, rep.CipherSuite, rep.Group))
		if rep.Handshakes > 0 {
			transport += fmt.Sprintf(", %s of %s handshakes resumed", percent(rep.Resumed), count(rep.Handshakes))
		}
	}
	line("server", "%s, %s", rep.Addr, transport)
	switch rep.Mode {
	case ModeIdle:
		line("opened", "%s of %d connections in %.2f s (%s/s), %s held", count(rep.Ops), rep.Conns, rep.Elapsed, rate(rep.OpsPerSecond), count(int64(rep.Held)))
	case ModeScale:
		line("ops", "%s ECHOs in %.2f s measured: %s/s", count(rep.Ops), rep.Elapsed, rate(rep.OpsPerSecond))
	default:
		line("ops", "%s in %.2f s: %s/s", count(rep.Ops), rep.Elapsed, rate(rep.OpsPerSecond))
	}
	line("errors", "%s", count(rep.Errors))
	for _, e := range rep.ErrorSamples {
		line("", "%s", e)
	}
	l := rep.Latency
	line("latency", "p50 %s  p99 %s  p99.9 %s  max %s  (per %s, %s timed)",
		micros(l.P50), micros(l.P99), micros(l.P999), micros(l.Max), l.Of, count(int64(l.Count)))
	if s := rep.Server; s != nil {
		per := "ECHO"
		if rep.Mode == ModeHandshake || rep.Mode == ModeIdle {
			per = "handshake"
		}
		line("server CPU", "%.2f s (pid %d): %s per CPU-second (%s)", s.CPU, s.PID, rate(s.OpsPerCPUSecond), per)
		mem := fmt.Sprintf("%s before, %s after", kib(float64(s.RSSBefore)), kib(float64(s.RSSAfter)))
		if s.RSSPerConn != 0 {
			mem += fmt.Sprintf(": %s per connection", kib(s.RSSPerConn))
		}
		line("server RSS", "%s", mem)
	}
	if rep.ClientCPU > 0 {
		line("client CPU", "%.2f s", rep.ClientCPU)
	}
	if len(rep.Points) > 0 {
		b.WriteString("\n")
		fmt.Fprintf(&b, "%8s %8s %10s %12s %10s %10s %12s %14s %7s\n",
			"conns", "held", "open p99", "ECHO p50", "ECHO p99", "ECHO max", "server CPU/s", "RSS per conn", "errors")
		for _, p := range rep.Points {
			cpu, mem := "-", "-"
			if s := p.Server; s != nil {
				cpu, mem = fmt.Sprintf("%.3f", s.CPUPerSecond), kib(s.RSSPerConn)
			}
			fmt.Fprintf(&b, "%8s %8s %10s %12s %10s %10s %12s %14s %7d\n",
				count(int64(p.Conns)), count(int64(p.Held)), micros(p.Handshake.P99), micros(p.Echo.P50), micros(p.Echo.P99), micros(p.Echo.Max), cpu, mem, p.Errors)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (rep *Report) describe() string {
	s := fmt.Sprintf("%s: %d connections", rep.Mode, rep.Conns)
	switch rep.Mode {
	case ModeHandshake:
		s = fmt.Sprintf("handshake: %d at a time, each with one ECHO of %d bytes", rep.Conns, rep.Size)
		if rep.Resume {
			s += ", resuming sessions"
		}
		return s
	case ModePipeline:
		return s + fmt.Sprintf(" × %d pipelined ECHOs of %d bytes", rep.Depth, rep.Size)
	case ModeIdle:
		return s + fmt.Sprintf(", one ECHO of %d bytes each, then held", rep.Size)
	case ModeScale:
		var pts []string
		for _, p := range rep.Points {
			pts = append(pts, count(int64(p.Conns)))
		}
		return fmt.Sprintf("scale: %s connections, each sending an ECHO of %d bytes every %s", strings.Join(pts, ", "), rep.Size, rep.Interval)
	}
	return s + fmt.Sprintf(", ping-pong ECHOs of %d bytes", rep.Size)
}

// count formats n with thousands separators.
func count(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + count(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func rate(v float64) string {
	if v >= 100 {
		return count(int64(v + 0.5))
	}
	return fmt.Sprintf("%.1f", v)
}

func percent(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

func micros(us float64) string {
	switch {
	case us >= 10_000:
		return fmt.Sprintf("%.1fms", us/1000)
	case us >= 1000:
		return fmt.Sprintf("%.2fms", us/1000)
	}
	return fmt.Sprintf("%.0fµs", us)
}

// kib formats a byte count in KiB or MiB, as /proc counts memory.
func kib(bytes float64) string {
	if bytes >= 10<<20 || bytes <= -10<<20 {
		return fmt.Sprintf("%.1f MiB", bytes/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", bytes/(1<<10))
}
