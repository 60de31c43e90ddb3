package benchdoc

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/spacecaptain/spacecaptain/internal/bench/soak"
)

// The blocks' names and writers.
const (
	SoakBlock       = "soak"
	ScalingBlock    = "scaling"
	HandshakesBlock = "handshake-chart"
)

// SoakRun is one engine's soak, with the path of its chart relative to the
// document.
type SoakRun struct {
	Summary *soak.Summary
	Samples []soak.Sample
	Chart   string
}

// SoakSection writes the soak section: for each run, its command, the
// criteria and what was measured, its totals and its chart.
func SoakSection(runs []SoakRun) Block {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("## Soak: hours under a game's load, rotating")
	p("")
	p("`scripts/soak.sh` runs a real sc-server on 127.0.0.1 under a game-like load: held TLS connections each sending a heartbeat ECHO every 10 s (from the moment all of them are open, each at its own point of the 10 s), 20 connections in ping-pong paced to 100 ECHOs a second each, 10 new connections a second (one ECHO each, then closed), and a certificate rotation every minute, cycling a keep-key `sc-cert rotate`, `sc-cert rotate --promote-next` (a new key), a Kubernetes-style `..data` symlink swap and a keep-key rotate followed at once by SIGHUP. The server's certificate directory is laid out as a Kubernetes secret volume (every file a symlink through `..data`).")
	p("")
	p("The clients trust the server as players do: four connections in five belong to 64 players that trust on first use, each with a known-hosts file of its own, and after every handshake record the key they proved and, through KEYS, the next key the server announces (as sc-client does); the fifth trusts the local CA (TLS 1.3 and 1.2 in turn). A key change is made only once every player has learned the key it moves to, so a refused key is a lockout and fails the run. Every 10 s the script records the server's RSS and open descriptors (/proc), heap in use, goroutines and GC pauses (its /metrics) and CPU time, and the clients' heartbeat latency, errors and reconnects, into a CSV (`docs/bench/soak-ENGINE.csv`, with the run's summary beside it as JSON).")
	p("")
	p("The run fails if any handshake or request fails (on the clients, or in the server's own counts); if a client is locked out; if RSS at the end exceeds RSS at the start of the steady state (minute 5; second 30 in a run under 10 minutes) — or, if the server has not yet collected garbage 3 times under the full load by then, at the first sample after its third collection — by more than 10%% (15%% in a short run); if open descriptors at the end differ from the steady state's by more than 50, or goroutines by more than 200 (epoll) or 1%% of the connections (goroutine engine, one goroutine per connection); or if the heartbeat ECHOs' p99 exceeds 50 ms in any 10 s window. `make test` runs a two-minute version of it on both engines (2,000 connections, a rotation every 15 s, so that all four kinds happen).")
	p("")
	p("Why the RSS criterion waits for three collections: a Go heap reaches its working size only by climbing to its GC goal (twice the live heap) a few times, and under this load the server collects rarely — with 2,000 connections once every 20-25 s, with 5,000 once a minute. With 2,000 connections, as in `make test`, the epoll engine had collected once at second 30; in a five-minute run its RSS then rose at each of the next collections as the heap's resident part (heap_sys − heap_released, sampled with /proc/PID/smaps_rollup and /metrics every 1-2 s) grew into memory the heap already held or newly mapped, from 30.5 to 34.8 MiB by the third collection (70 s) and by 0.4 MiB in the 230 s after, while the rest of RSS stayed within 2-4 MiB, the GC goal within 32-34 MiB and the heap in use after each collection flat: not a leak. Measured from second 30, RSS grew 7.4%%, 8.1%% and 13.7%% in three runs (2 and 5 minutes, 2,000 connections, a loaded machine); from the third collection, 2.9%%, 1.2%% and 3.4%%. The goroutine engine's heap peaks while its connections open, and its RSS is flat either way.")
	p("")
	for _, r := range runs {
		s := r.Summary
		p("### %s engine, %s", s.Engine, runLength(s.Minutes))
		p("")
		if s.Note != "" {
			p("**%s**", s.Note)
			p("")
		}
		p("Started %s; %s held connections (all open after %.1f s), %d in ping-pong at %.0f ECHOs/s, %.0f new connections/s, a rotation every %s. Load average (1, 5, 15 min) %s before, %s after, on %d CPUs.",
			s.Started.Format("2006-01-02 15:04 MST"), thousands(s.Conns), s.OpenSeconds, s.PingPong, s.PingPongRate, s.NewRate, s.RotateEvery, s.LoadBefore, s.LoadAfter, s.CPUs)
		p("")
		p("```")
		p("%s", SoakCommand(s))
		p("```")
		p("")
		verdict := "**passed**"
		if !s.Pass {
			verdict = "**FAILED**"
		}
		p("| Criterion | Limit | Measured | Result |")
		p("|---|---|---|---|")
		for _, c := range s.Checks {
			res := "met"
			if !c.Pass {
				res = "**not met**"
			}
			p("| %s | %s | %s | %s |", c.Name, c.Limit, c.Measured, res)
		}
		p("")
		t := s.Totals
		p("Run %s: %s handshakes, %s heartbeat ECHOs, %s ping-pong ECHOs, %s new connections; %d errors, %d reconnects, %d lockouts; the players learned a next key %s times from KEYS (%d announcements skipped because the key changed between handshake and KEYS). The server counted %d failed handshakes, %d connections closed for an error and %d refused certificate reloads, and logged %d warnings and %d errors.",
			verdict, thousands64(t.Handshakes), thousands64(t.Heartbeats), thousands64(t.PingPongs), thousands64(t.NewConns), t.Errors, t.Reconnects, t.Lockouts,
			thousands64(t.KeysLearned), t.BadAnnouncements, t.ServerFailedHandshakes, t.ServerErrorCloses, t.ServerReloadsFailed, t.ServerLogWarnings, t.ServerLogErrors)
		p("")
		p("%s", rotationLine(s.Rotations))
		p("")
		if len(s.ErrorSamples) > 0 {
			p("First errors:")
			p("")
			for _, e := range s.ErrorSamples {
				p("- `%s`", strings.ReplaceAll(e, "`", "'"))
			}
			p("")
		}
		if len(s.ServerLogSamples) > 0 {
			p("The server's first warnings and errors:")
			p("")
			for _, e := range s.ServerLogSamples {
				p("- `%s`", strings.ReplaceAll(e, "`", "'"))
			}
			p("")
		}
		p("![Soak of the %s engine: server memory, heartbeat latency, goroutines and descriptors over time, rotations marked](%s)", s.Engine, r.Chart)
		p("")
	}
	if len(runs) == 0 {
		p("No soak has been recorded yet: `scripts/soak.sh --record` writes this section.")
		p("")
	}
	return Block{Name: SoakBlock, Writer: "scripts/soak.sh --record", Body: b.String()}
}

// SoakCommand is the scripts/soak.sh command line that repeats a run.
func SoakCommand(s *soak.Summary) string {
	return fmt.Sprintf("scripts/soak.sh --minutes %s --conns %d --engine %s --rotate-every %s --record",
		strings.TrimSuffix(fmt.Sprintf("%.2f", s.Minutes), ".00"), s.Conns, s.Engine, s.RotateEvery)
}

func runLength(minutes float64) string {
	if minutes >= 10 {
		return fmt.Sprintf("%.0f minutes", minutes)
	}
	return fmt.Sprintf("%.0f minutes (a short run)", minutes)
}

// rotationLine sums up the rotations: how many of each kind, and how soon
// new handshakes got the new certificate.
func rotationLine(rots []soak.Rotation) string {
	var served []float64
	kinds := map[string]int{}
	failed := 0
	keys := 0
	for _, r := range rots {
		if r.Err != "" {
			failed++
			continue
		}
		kinds[r.Kind]++
		served = append(served, r.ServedMs)
		if r.KeyChanged {
			keys++
		}
	}
	var parts []string
	for _, k := range soak.Kinds() {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, kinds[k]))
	}
	s := fmt.Sprintf("Rotations: %d (%s), %d of them key changes", len(rots)-failed, strings.Join(parts, ", "), keys)
	if failed > 0 {
		s += fmt.Sprintf(", and **%d failed**", failed)
	}
	if len(served) > 0 {
		slices.Sort(served)
		s += fmt.Sprintf("; the first new handshake got the new certificate %.0f ms after it was on disk at the median, %.0f ms at most (the server debounces file events for 100 ms, and the probe polls every 20 ms).",
			served[len(served)/2], served[len(served)-1])
	} else {
		s += "."
	}
	return s
}

// ScalingSection writes the scaling section: the command, a table of
// every point of every server, the shape of each curve, and the chart.
func ScalingSection(series []ScalingSeries, chart, command, note string) Block {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("## Scaling: how cost grows with connections")
	p("")
	p("`scripts/bench.sh --scaling` runs `sc-client bench scale` against each engine and the reference server, each a fresh process: connections are opened in steps to each point (64 dialing at once), every open connection sends one 64-byte ECHO a second, and at each point, 3 s after its last connection opened, the run measures for 20 s the server's CPU time per second and RSS per connection ((RSS − RSS before any connection) / connections), the latency of the handshakes that opened the point's connections (dial, TLS 1.3 handshake, one ECHO; while the connections already open keep sending theirs) and that of the steady-state ECHOs.")
	p("")
	if note != "" {
		p("**%s**", note)
		p("")
	}
	if command != "" {
		p("```")
		p("%s", command)
		p("```")
		p("")
	}
	p("| Server | Connections | Held | RSS per connection | Server CPU per second | ECHOs per CPU-second | Handshake p99 (opening) | ECHO p50 | ECHO p99 | Errors |")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, s := range series {
		for _, pt := range s.Report.Points {
			rss, cpu, per := "—", "—", "—"
			if sv := pt.Server; sv != nil {
				rss = fmt.Sprintf("%.1f KiB", sv.RSSPerConn/1024)
				cpu = fmt.Sprintf("%.3f", sv.CPUPerSecond)
				per = thousands(int(sv.EchoesPerCPUSecond + 0.5))
			}
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |", s.Name, thousands(pt.Conns), thousands(pt.Held), rss, cpu, per,
				ms(pt.Handshake.P99), ms(pt.Echo.P50), ms(pt.Echo.P99), pt.Errors)
		}
	}
	p("")
	p("### The shape of each curve")
	p("")
	p("Each curve's growth from the first point to the last, as the exponent k of connections^k (log-log slope): flat is |k| < 0.25, linear 0.75–1.25, worse than linear above 1.25.")
	p("")
	for _, s := range series {
		p("- **%s**: %s.", s.Name, strings.Join(shapes(s), "; "))
	}
	p("")
	p("What each curve should look like, and why:")
	p("")
	p("- **RSS per connection: flat.** A connection costs the server a fixed amount of memory — in the epoll engine the TLS connection state alone while it is idle (no goroutine, no buffer), in the goroutine engine and the reference server also a goroutine's stack and the buffers of a blocked read — so total RSS grows linearly with connections. At the first points the figure is higher and falls: memory the runtime took during the handshakes and has not yet returned is divided among fewer connections.")
	p("- **Server CPU per second: linear.** Every connection sends one ECHO a second, so the work grows with the connections; the cost per ECHO (ECHOs per CPU-second, in the table) should stay flat, because an idle connection costs nothing per event: epoll reports only the descriptors that are ready, in our epoll loop and in the Go runtime's netpoller alike. What could make it worse than linear is the garbage collector, whose marking work grows with live memory (in the goroutine engine, a stack per connection), though collections get rarer as the heap grows; it would show as ECHOs per CPU-second falling.")
	p("- **Handshake p99 while opening: flat.** It is set by how many handshakes wait at once (64 dials in flight) against the CPU a handshake takes, not by how many connections are already open; the open connections' ECHOs (one per connection per second) take a growing but small share of the CPU.")
	p("- **ECHO p99 at steady state: flat** while the server has CPU to spare: a reply waits only for the ECHOs that arrived in the same instant. It rises once the CPU is saturated (the load generator shares the machine's cores).")
	p("")
	p("![Scaling: RSS per connection, server CPU per second, handshake p99 while opening and ECHO p99, against connections, for each engine and the reference server](%s)", chart)
	p("")
	return Block{Name: ScalingBlock, Writer: "scripts/bench.sh --scaling", Body: b.String()}
}

// shapes classifies a server's four curves.
func shapes(s ScalingSeries) []string {
	pts := s.Report.Points
	if len(pts) < 2 {
		return []string{"one point: no curve"}
	}
	first, last := pts[0], pts[len(pts)-1]
	n0, n1 := float64(first.Conns), float64(last.Conns)
	var out []string
	add := func(name string, y0, y1 float64, unit func(float64) string) {
		if y0 <= 0 || y1 <= 0 {
			out = append(out, name+" not measured")
			return
		}
		k := math.Log(y1/y0) / math.Log(n1/n0)
		out = append(out, fmt.Sprintf("%s %s (%s → %s, k = %.2f)", name, class(k), unit(y0), unit(y1), k))
	}
	if first.Server != nil && last.Server != nil {
		add("RSS per connection", first.Server.RSSPerConn, last.Server.RSSPerConn, func(v float64) string { return fmt.Sprintf("%.1f KiB", v/1024) })
		add("CPU per second", first.Server.CPUPerSecond, last.Server.CPUPerSecond, func(v float64) string { return fmt.Sprintf("%.3f", v) })
		add("ECHOs per CPU-second", first.Server.EchoesPerCPUSecond, last.Server.EchoesPerCPUSecond, func(v float64) string { return thousands(int(v + 0.5)) })
	}
	add("handshake p99", first.Handshake.P99, last.Handshake.P99, ms)
	add("ECHO p99", first.Echo.P99, last.Echo.P99, ms)
	return out
}

// class names a log-log slope.
func class(k float64) string {
	switch {
	case k < -0.25:
		return "falling"
	case k < 0.25:
		return "flat"
	case k < 0.75:
		return "sublinear"
	case k <= 1.25:
		return "linear"
	}
	return "worse than linear"
}

// HandshakeSection writes the section of the handshake chart.
func HandshakeSection(rates []HandshakeRate, chart, source string) Block {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("## Handshake rates per key type and engine")
	p("")
	p("Full and resumed TLS 1.3 handshakes per second of the server's CPU time, by the server certificate's key type and the key-exchange group, for each engine and the reference server (%s).", source)
	p("")
	p("![Handshakes per server CPU-second by key type, group and resumption, for each engine and the reference server](%s)", chart)
	p("")
	var cases, servers []string
	for _, r := range rates {
		if !slices.Contains(cases, r.Case) {
			cases = append(cases, r.Case)
		}
		if !slices.Contains(servers, r.Server) {
			servers = append(servers, r.Server)
		}
	}
	p("| Case | %s |", strings.Join(servers, " | "))
	p("|---|%s", strings.Repeat("--:|", len(servers)))
	for _, c := range cases {
		row := []string{c}
		for _, srv := range servers {
			v := "—"
			for _, r := range rates {
				if r.Case == c && r.Server == srv {
					v = thousands(int(r.PerCPUSecond + 0.5))
				}
			}
			row = append(row, v)
		}
		p("| %s |", strings.Join(row, " | "))
	}
	p("")
	return Block{Name: HandshakesBlock, Writer: "scripts/bench.sh", Body: b.String()}
}

func ms(us float64) string {
	switch {
	case us >= 10_000:
		return fmt.Sprintf("%.0f ms", us/1000)
	case us >= 1000:
		return fmt.Sprintf("%.1f ms", us/1000)
	}
	return fmt.Sprintf("%.2f ms", us/1000)
}

func thousands64(n int64) string { return thousands(int(n)) }
