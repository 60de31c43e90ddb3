package soak

import (
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// Defaults of [Options]: the full run of scripts/soak.sh.
const (
	DefaultDuration        = 60 * time.Minute
	DefaultConns           = 15000
	DefaultPingPong        = 20
	DefaultPingPongRate    = 100
	DefaultNewRate         = 10
	DefaultHeartbeat       = 10 * time.Second
	DefaultSample          = 10 * time.Second
	DefaultRotateEvery     = time.Minute
	DefaultPlayers         = 64
	DefaultCAEvery         = 5
	DefaultDialConcurrency = 32
	DefaultTimeout         = 10 * time.Second
	DefaultFDDrift         = 50
	DefaultLatencyLimit    = 50 * time.Millisecond
	DefaultSteadyGCCycles  = 3

	// fullRun is the shortest run judged as a full one: steady state from
	// minute 5 and 10% RSS growth allowed, rather than from second 30 and
	// 15%.
	fullRun = 10 * time.Minute
)

// Options configures [Run]. Bin, Dir and Engine are required; a zero field
// means its default.
type Options struct {
	// Bin is the directory holding the sc-server and sc-cert binaries.
	// Required.
	Bin string
	// Dir is where the run keeps its files: the certificates, the
	// players' known-hosts files and the server's log. Required; made if
	// missing, and it must be empty if it exists.
	Dir string
	// Engine is sc-server's --engine. Required.
	Engine string

	// Duration is the length of the run. Default 60 minutes.
	Duration time.Duration
	// Conns is the number of held connections. Default 15,000.
	Conns int
	// PingPong is the number of ping-pong connections (default 20), each
	// paced to PingPongRate ECHOs a second (default 100).
	PingPong     int
	PingPongRate float64
	// NewRate is how many new connections a second open, do one ECHO and
	// close. Default 10.
	NewRate float64
	// Heartbeat is each held connection's ECHO period. Default 10 s.
	Heartbeat time.Duration
	// Sample is the sampling period, and the window of the latency
	// criterion. Default 10 s.
	Sample time.Duration
	// RotateEvery is the period of the rotations. Default 1 minute.
	RotateEvery time.Duration

	// Players is the number of trust-on-first-use players, each with a
	// known-hosts file. Default 64.
	Players int
	// CAEvery makes every CAEvery-th connection trust the local CA rather
	// than a player's known hosts. Default 5.
	CAEvery int
	// DialConcurrency bounds the held connections being opened at once.
	// Default 32.
	DialConcurrency int
	// Timeout bounds each dial and handshake and each request. Default
	// 10 s.
	Timeout time.Duration

	// SteadyAt is when the steady state starts, the reference of the RSS,
	// descriptor and goroutine criteria: default minute 5 in a run of 10
	// minutes or more, second 30 in a shorter one.
	SteadyAt time.Duration
	// SteadyGCCycles delays the RSS criterion's reference past SteadyAt
	// until the server has completed this many garbage collections under
	// the full load (in sampling windows that began once every held
	// connection was open). Default 3; negative: SteadyAt alone.
	//
	// A Go heap reaches its working size only by climbing to its GC goal
	// (twice the live heap) a few times, and under the soak's load the
	// server collects rarely: with 2,000 connections once every 20-25 s
	// (after 23 collections while the connections opened), with 5,000
	// once a minute. Measured with 2,000 connections (scripts/soak.sh
	// --minutes 2 and 5, sampling /proc/PID/smaps_rollup and /metrics
	// every 1-2 s), the epoll engine had collected once at second 30, and
	// its RSS rose at the next collections as the heap's resident part
	// (heap_sys − heap_released) grew into memory the heap held or newly
	// mapped, 30.5 → 34.8 MiB by the third collection (70 s), then by 0.4
	// MiB in the next 230 s; the rest of RSS stayed within 2-4 MiB, the
	// GC goal within 32-34 MiB and the heap in use after each collection
	// flat. From second 30 RSS grew 7.4%, 8.1% and 13.7% in three runs;
	// from the third collection 2.9%, 1.2% and 3.4%. The goroutine
	// engine's heap peaks while its connections open, so its RSS is flat
	// either way.
	SteadyGCCycles int
	// RSSGrowth is the RSS growth allowed from SteadyAt to the end, as a
	// fraction: default 0.10 in a run of 10 minutes or more, 0.15 in a
	// shorter one.
	RSSGrowth float64
	// FDDrift is the change of open descriptors allowed from SteadyAt to
	// the end. Default 50.
	FDDrift int
	// GoroutineDrift is the change of the server's goroutines allowed from
	// SteadyAt to the end: default 200 for the epoll engine, 1% of Conns
	// for the goroutine engine (one goroutine per connection).
	GoroutineDrift int
	// LatencyLimit bounds the heartbeat ECHOs' p99 in every window.
	// Default 50 ms.
	LatencyLimit time.Duration

	// Note is copied into the summary: what the person running it wants
	// said with the results.
	Note string

	// CSV receives a header, then one line per sample as it is taken. Nil
	// means none.
	CSV io.Writer
	// Log receives a progress line per sample and one per rotation, one
	// Write at a time. Nil means none.
	Log io.Writer
}

func (o Options) resolve() (Options, error) {
	if o.Bin == "" || o.Dir == "" || o.Engine == "" {
		return o, errors.New("the binaries' directory, a working directory and an engine are required")
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&o.Duration, DefaultDuration)
	setDur(&o.Heartbeat, DefaultHeartbeat)
	setDur(&o.Sample, DefaultSample)
	setDur(&o.RotateEvery, DefaultRotateEvery)
	setDur(&o.Timeout, DefaultTimeout)
	setDur(&o.LatencyLimit, DefaultLatencyLimit)
	full := o.Duration >= fullRun
	if full {
		setDur(&o.SteadyAt, 5*time.Minute)
	} else {
		setDur(&o.SteadyAt, 30*time.Second)
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&o.Conns, DefaultConns)
	setInt(&o.PingPong, DefaultPingPong)
	setInt(&o.Players, DefaultPlayers)
	setInt(&o.CAEvery, DefaultCAEvery)
	setInt(&o.DialConcurrency, DefaultDialConcurrency)
	setInt(&o.FDDrift, DefaultFDDrift)
	setInt(&o.SteadyGCCycles, DefaultSteadyGCCycles)
	if o.PingPongRate == 0 {
		o.PingPongRate = DefaultPingPongRate
	}
	if o.NewRate == 0 {
		o.NewRate = DefaultNewRate
	}
	if o.GoroutineDrift == 0 {
		o.GoroutineDrift = 200
		if o.Engine == "goroutine" {
			// One goroutine per connection: 1% of the held ones, plus
			// the new connections alive at a sample's instant (NewRate
			// a second, each living up to a second on a busy machine)
			// and a few for a reload in progress. Without that margin
			// a 40-connection run failed on two connections in flight.
			o.GoroutineDrift = o.Conns/100 + int(math.Ceil(o.NewRate)) + 8
		}
	}
	if o.RSSGrowth == 0 {
		o.RSSGrowth = 0.15
		if full {
			o.RSSGrowth = 0.10
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"duration", o.Duration}, {"heartbeat", o.Heartbeat}, {"sample period", o.Sample}, {"rotation period", o.RotateEvery},
		{"timeout", o.Timeout}, {"latency limit", o.LatencyLimit}, {"steady state start", o.SteadyAt}} {
		if d.v < 0 {
			return o, fmt.Errorf("%s %v is negative", d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"connections", o.Conns}, {"ping-pong connections", o.PingPong}, {"players", o.Players}, {"CA share", o.CAEvery},
		{"dial concurrency", o.DialConcurrency}, {"descriptor drift", o.FDDrift}, {"goroutine drift", o.GoroutineDrift}} {
		if n.v < 0 {
			return o, fmt.Errorf("%s %d is negative", n.name, n.v)
		}
	}
	if o.PingPongRate < 0 || o.NewRate < 0 || o.RSSGrowth < 0 {
		return o, errors.New("rates and the RSS growth allowed must not be negative")
	}
	if o.CAEvery < 2 {
		return o, fmt.Errorf("CA share 1 in %d leaves no player: want 2 or more", o.CAEvery)
	}
	if o.SteadyAt+o.Sample > o.Duration {
		return o, fmt.Errorf("the steady state starts at %v and the run lasts %v: no sample after it to compare with", o.SteadyAt, o.Duration)
	}
	if o.Sample%time.Second != 0 || o.SteadyAt%o.Sample != 0 || o.Duration%o.Sample != 0 {
		return o, fmt.Errorf("the duration (%v) and the steady state start (%v) must be whole multiples of the sample period (%v), itself whole seconds", o.Duration, o.SteadyAt, o.Sample)
	}
	return o, nil
}
