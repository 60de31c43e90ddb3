package soak

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// The kinds of rotation, in the order the run cycles through them.
const (
	// RotateKeepKey is sc-cert rotate: a new certificate on the same key,
	// written by rename into the served directory.
	RotateKeepKey = "rotate"
	// RotatePromote is sc-cert rotate --promote-next: the announced next
	// key becomes the server's key, and a new next key is made.
	RotatePromote = "promote-next"
	// RotateDataSwap is a Kubernetes-style secret update: a new generation
	// directory (a keep-key re-issue) and the "..data" symlink swapped to
	// it, events that never name the served files.
	RotateDataSwap = "data-swap"
	// RotateSIGHUP is a keep-key sc-cert rotate followed at once by SIGHUP.
	RotateSIGHUP = "sighup"
)

// Kinds lists the kinds of rotation in the order of the cycle.
func Kinds() []string { return []string{RotateKeepKey, RotatePromote, RotateDataSwap, RotateSIGHUP} }

// Rotation is one rotation of the run.
type Rotation struct {
	// T is when it began, in seconds since the server started serving.
	T    float64 `json:"t_s"`
	Kind string  `json:"kind"`
	// Serial and Pin are the new certificate's serial and key pin;
	// KeyChanged says whether the pin changed; NextPin is the next key's
	// pin the server announces from then on.
	Serial     string `json:"serial,omitempty"`
	Pin        string `json:"pin,omitempty"`
	NextPin    string `json:"next_pin,omitempty"`
	KeyChanged bool   `json:"key_changed"`
	// ServedMs is how long after the change was on disk a new handshake
	// first got the new certificate, in milliseconds.
	ServedMs float64 `json:"served_ms,omitempty"`
	// Err says why the rotation did not happen or was not served.
	Err string `json:"error,omitempty"`
}

// Check is one criterion of the run and its outcome.
type Check struct {
	Name     string `json:"name"`
	Limit    string `json:"limit"`
	Measured string `json:"measured"`
	Pass     bool   `json:"pass"`
}

// Totals are the run's counts.
type Totals struct {
	// Handshakes counts the clients' completed TLS handshakes.
	Handshakes int64 `json:"handshakes"`
	Heartbeats int64 `json:"heartbeats"`
	PingPongs  int64 `json:"ping_pongs"`
	NewConns   int64 `json:"new_conns"`
	// Errors counts every failed handshake or request on the clients'
	// side, Lockouts those that refused the server's key, Reconnects the
	// held connections reopened.
	Errors     int64 `json:"errors"`
	Lockouts   int64 `json:"lockouts"`
	Reconnects int64 `json:"reconnects"`
	// KeysLearned counts the times a player recorded a next key it did
	// not know; BadAnnouncements the KEYS replies skipped because the
	// server had moved to a new key between the handshake and KEYS.
	KeysLearned      int64 `json:"keys_learned"`
	BadAnnouncements int64 `json:"bad_announcements"`
	// ServerFailedHandshakes and ServerErrorCloses are the server's own
	// counts over the run (its /metrics): handshakes whose result was not
	// ok, and connections closed for an error or a timeout.
	ServerFailedHandshakes int64 `json:"server_failed_handshakes"`
	ServerErrorCloses      int64 `json:"server_error_closes"`
	// ServerReloadsFailed counts the server's refused certificate
	// reloads (the old certificate kept serving).
	ServerReloadsFailed int64 `json:"server_reloads_failed"`
	// ServerLogWarnings and ServerLogErrors count the server's log lines
	// at those levels (a reload that kept the old certificate is a
	// warning).
	ServerLogWarnings int `json:"server_log_warnings"`
	ServerLogErrors   int `json:"server_log_errors"`
}

// Summary is the outcome of a [Run], as scripts/soak.sh writes it beside
// the samples' CSV.
type Summary struct {
	Engine       string  `json:"engine"`
	Conns        int     `json:"conns"`
	PingPong     int     `json:"ping_pong_conns"`
	PingPongRate float64 `json:"ping_pong_rate"`
	NewRate      float64 `json:"new_conns_per_s"`
	Heartbeat    string  `json:"heartbeat"`
	Minutes      float64 `json:"minutes"`
	RotateEvery  string  `json:"rotate_every"`
	Players      int     `json:"players"`
	CAEvery      int     `json:"ca_every"`

	// Note is what the person who ran it said about the run (say, that
	// the machine was busy), printed with its results.
	Note string `json:"note,omitempty"`

	Started time.Time `json:"started"`
	// CPUs and the load averages (1, 5, 15 minutes) before and after the
	// run: a machine shared with other work gives noisier figures.
	CPUs       int    `json:"cpus"`
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
	// ServerArgs is sc-server's command line, paths relative to the run's
	// directory.
	ServerArgs []string `json:"server_args"`
	// OpenSeconds is how long the held connections took to open.
	OpenSeconds float64 `json:"open_s"`

	Rotations []Rotation `json:"rotations"`
	// Steady and End are the samples the criteria compare.
	Steady Sample `json:"steady"`
	End    Sample `json:"end"`
	// MemorySteady is the RSS criterion's reference: Steady, or a later
	// sample when the server had not yet completed SteadyGCCycles
	// garbage collections under the full load by then.
	MemorySteady Sample `json:"memory_steady"`
	Totals       Totals `json:"totals"`
	// ErrorSamples are the first few client errors, ServerLogSamples the
	// server's first few warnings and errors.
	ErrorSamples     []string `json:"error_samples,omitempty"`
	ServerLogSamples []string `json:"server_log_samples,omitempty"`
	Checks           []Check  `json:"checks"`
	Pass             bool     `json:"pass"`
}

// Failures returns the checks that failed.
func (s *Summary) Failures() []Check {
	var out []Check
	for _, c := range s.Checks {
		if !c.Pass {
			out = append(out, c)
		}
	}
	return out
}

// Evaluate judges a run by the criteria: no failed handshake or
// request on either side, no client locked out, every rotation done and
// served, each kind at least once when the run is long enough for a whole
// cycle; RSS at the end within RSSGrowth of the steady state's (once the
// server has collected garbage SteadyGCCycles times under load), open
// descriptors within FDDrift and goroutines within GoroutineDrift of it;
// the heartbeat ECHOs' p99 within LatencyLimit in every window. It sets
// s.Steady, s.MemorySteady, s.End, s.Checks and s.Pass. o must be
// resolved.
func Evaluate(o Options, s *Summary, samples []Sample) {
	s.Checks = nil
	add := func(name, limit, measured string, pass bool) {
		s.Checks = append(s.Checks, Check{Name: name, Limit: limit, Measured: measured, Pass: pass})
	}
	t := s.Totals
	add("no failed handshake or request", "0",
		fmt.Sprintf("%d on the clients, %d failed handshakes and %d error closes on the server", t.Errors, t.ServerFailedHandshakes, t.ServerErrorCloses),
		t.Errors == 0 && t.ServerFailedHandshakes == 0 && t.ServerErrorCloses == 0)
	add("no client locked out", "0", fmt.Sprintf("%d handshakes refused the server's key", t.Lockouts), t.Lockouts == 0)

	var failed []string
	kinds := map[string]int{}
	for _, r := range s.Rotations {
		if r.Err != "" {
			failed = append(failed, fmt.Sprintf("%s at %.0fs: %s", r.Kind, r.T, r.Err))
		} else {
			kinds[r.Kind]++
		}
	}
	measured := fmt.Sprintf("%d done (%s)", len(s.Rotations)-len(failed), kindCounts(kinds))
	if len(failed) > 0 {
		measured += "; failed: " + failed[0]
	}
	wantAll := o.Duration-o.Sample >= time.Duration(len(Kinds()))*o.RotateEvery
	allKinds := true
	for _, k := range Kinds() {
		allKinds = allKinds && kinds[k] > 0
	}
	limit := "every rotation served"
	if wantAll {
		limit += ", each kind at least once"
	}
	add("rotations", limit, measured, len(failed) == 0 && (allKinds || !wantAll))

	steady, end, ok := steadyAndEnd(o, samples)
	if !ok {
		add("samples", "one at the steady state's start and one at the end", fmt.Sprintf("%d samples", len(samples)), false)
		s.Pass = false
		return
	}
	s.Steady, s.End = steady, end
	if mem, cycles, ok := memorySteady(o, s.OpenSeconds, samples, steady); !ok {
		add("RSS growth", fmt.Sprintf("≤ %.0f%% from %d GC cycles under the full load (and %.0fs) to the end", 100*o.RSSGrowth, o.SteadyGCCycles, steady.T),
			fmt.Sprintf("the server collected garbage %d times under the full load before the last sample: its heap never reached its working size; run longer", cycles), false)
	} else {
		s.MemorySteady = mem
		from := fmt.Sprintf("%.0fs", mem.T)
		if mem.T != steady.T {
			from += fmt.Sprintf(" (the first sample after %.0fs with %d GC cycles under the full load)", steady.T, o.SteadyGCCycles)
		}
		growth := float64(end.RSS)/float64(mem.RSS) - 1
		add("RSS growth", fmt.Sprintf("≤ %.0f%% from %s to the end", 100*o.RSSGrowth, from),
			fmt.Sprintf("%.1f → %.1f MiB (%+.1f%%)", mib(mem.RSS), mib(end.RSS), 100*growth), growth <= o.RSSGrowth)
	}
	dfd := end.FDs - steady.FDs
	add("open descriptors", fmt.Sprintf("within ±%d of %.0fs", o.FDDrift, steady.T),
		fmt.Sprintf("%d → %d (%+d)", steady.FDs, end.FDs, dfd), abs(dfd) <= o.FDDrift)
	dg := end.Goroutines - steady.Goroutines
	add("goroutines", fmt.Sprintf("within ±%d of %.0fs", o.GoroutineDrift, steady.T),
		fmt.Sprintf("%d → %d (%+d)", steady.Goroutines, end.Goroutines, dg), abs(dg) <= o.GoroutineDrift)

	worst, at, windows := 0.0, 0.0, 0
	for _, x := range samples {
		if x.HBCount == 0 {
			continue
		}
		windows++
		if x.HBP99 > worst {
			worst, at = x.HBP99, x.T
		}
	}
	limitMs := float64(o.LatencyLimit) / float64(time.Millisecond)
	add("heartbeat ECHO p99", fmt.Sprintf("≤ %.0f ms in every %v window", limitMs, o.Sample),
		fmt.Sprintf("worst %.2f ms (window ending %.0fs) of %d windows", worst, at, windows), windows > 0 && worst <= limitMs)

	s.Pass = true
	for _, c := range s.Checks {
		s.Pass = s.Pass && c.Pass
	}
}

// steadyAndEnd returns the first sample at or after SteadyAt and the last
// one, which must be at the end of the run.
func steadyAndEnd(o Options, samples []Sample) (steady, end Sample, ok bool) {
	if len(samples) < 2 {
		return steady, end, false
	}
	i := slices.IndexFunc(samples, func(x Sample) bool { return x.T >= o.SteadyAt.Seconds()-0.5 })
	end = samples[len(samples)-1]
	if i < 0 || i == len(samples)-1 || math.Abs(end.T-o.Duration.Seconds()) > 0.5 {
		return steady, end, false
	}
	return samples[i], end, true
}

// memorySteady returns the first sample from steady on (but before the
// last) by which the server had completed o.SteadyGCCycles garbage
// collections in windows that began once every held connection was open
// (at openSeconds), and how many it completed so by the last sample. The
// connections' opening collects often, on a heap still growing, and says
// nothing about the working size.
func memorySteady(o Options, openSeconds float64, samples []Sample, steady Sample) (Sample, int, bool) {
	cycles := 0
	for i := 1; i < len(samples)-1; i++ {
		if samples[i-1].T >= openSeconds {
			cycles += int(samples[i].GCCycles)
		}
		if samples[i].T >= steady.T && (o.SteadyGCCycles < 0 || cycles >= o.SteadyGCCycles) {
			return samples[i], cycles, true
		}
	}
	if o.SteadyGCCycles < 0 {
		return steady, cycles, true
	}
	return Sample{}, cycles, false
}

func kindCounts(m map[string]int) string {
	var parts []string
	for _, k := range Kinds() {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
