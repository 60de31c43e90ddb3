package bench

import (
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// Mode is what a benchmark measures.
type Mode string

// The modes of [Bench].
const (
	// ModeHandshake opens connection after connection: each operation is
	// a dial, a TLS handshake, one ECHO of Options.Size bytes and a close.
	// The ECHO makes the operation end only once the server has finished
	// its side of the handshake (a TLS 1.3 client's Handshake returns
	// before the server has read its Finished) and lets the client read
	// the TLS 1.3 session ticket, which crypto/tls only takes in while
	// reading. With Options.Resume the connections share a session cache.
	ModeHandshake Mode = "handshake"
	// ModeEcho opens Options.Conns connections, then each sends an ECHO
	// and waits for its reply, again and again (ping-pong).
	ModeEcho Mode = "echo"
	// ModePipeline opens Options.Conns connections, then each writes
	// Options.Depth ECHOs at once, in one write, and reads their replies,
	// again and again. An operation is one ECHO; latency is per batch.
	ModePipeline Mode = "pipeline"
	// ModeIdle opens Options.Conns connections, sends one ECHO on each,
	// and holds them all open: it measures what an idle connection costs
	// the server ([ServerStats.RSSPerConn]) and whether it holds that many.
	ModeIdle Mode = "idle"
	// ModeScale opens connections in steps, to each count of
	// Options.Points in turn, while every open connection sends one ECHO
	// of Options.Size bytes each Options.Interval. At each point it
	// measures for Options.Duration: the server's memory per connection,
	// its CPU time per second, the handshakes' latency while the point's
	// connections opened and the ECHOs' latency at steady state. It shows
	// how the server's cost grows with the number of players.
	ModeScale Mode = "scale"
)

// Modes lists every mode, in the order help texts show them.
func Modes() []Mode { return []Mode{ModeHandshake, ModeEcho, ModePipeline, ModeIdle, ModeScale} }

// DefaultPoints are the connection counts of a scaling run: from a
// thousand players to the most one server process holds here (its
// open-file limit is 20,000).
var DefaultPoints = []int{1000, 2000, 5000, 10000, 15000, 19000}

// Defaults of [Options]; a zero field means its default.
const (
	DefaultConns           = 50
	DefaultDepth           = 64
	DefaultSize            = 64
	DefaultDuration        = 10 * time.Second
	DefaultCount           = 10_000_000
	DefaultDialConcurrency = 64
	DefaultTimeout         = 10 * time.Second
	DefaultSettle          = 3 * time.Second
	DefaultInterval        = time.Second
)

// Options configures a [Bench]. Mode and Addr are required; every other
// zero field means its default.
type Options struct {
	// Mode is what to measure. Required.
	Mode Mode

	// Addr is the server's "host:port". Required. Keep load tests on
	// addresses of this machine (127.0.0.1, ::1): the server and the load
	// generator share its CPUs, which is why figures are given per server
	// CPU-second.
	Addr string

	// TLSConfig is the client's TLS configuration, with its trust
	// decision (package pinning builds one). Nil means plaintext. It is
	// cloned, never changed.
	TLSConfig *tls.Config

	// DTLS, when set, makes every connection a DTLS 1.2 session over UDP
	// with these options (their Verify is the trust decision); TLSConfig
	// must then be nil and Resume false. Over DTLS the handshake mode's
	// operations include the cookie exchange, and the idle mode's sessions
	// must outlive the server's inactivity timeout (sc-server
	// --dtls-idle-timeout) for the run.
	DTLS *client.DTLSOptions

	// Resume makes connections resume TLS sessions: they share a client
	// session cache (the config's own ClientSessionCache if it has one).
	// Without Resume every handshake is a full one: the config's cache is
	// removed.
	Resume bool

	// Conns is the number of connections: held open at once in the echo,
	// pipeline and idle modes, opened concurrently over and over in the
	// handshake mode. Zero means DefaultConns (50). The scale mode takes
	// its counts from Points and needs Conns zero (it reports the largest
	// point as Conns).
	Conns int

	// Points are the connection counts of the scale mode, in increasing
	// order. Nil means DefaultPoints; other modes must leave it nil.
	Points []int

	// Interval is how often each connection of the scale mode sends an
	// ECHO. Zero means DefaultInterval (1 s).
	Interval time.Duration

	// Depth is the number of ECHOs each connection writes at once in the
	// pipeline mode. Zero means DefaultDepth (64); other modes use 1.
	Depth int

	// Size is the body of every ECHO, in bytes (at most proto.MaxBody's
	// default, 4096, unless the server allows more). Zero means
	// DefaultSize (64); there is no way to ask for empty bodies.
	Size int

	// Duration bounds the measured phase; the run also ends after Count
	// operations, whichever comes first. In the idle mode it is how long
	// the connections are held after the last one opened (at least
	// Settle); in the scale mode, how long each point is measured. Zero
	// means DefaultDuration (10 s).
	Duration time.Duration

	// Count bounds the operations of the measured phase (ECHOs, or
	// handshakes in the handshake mode); the idle mode opens Conns
	// connections and ignores it. Zero means DefaultCount (10 million).
	Count int64

	// DialConcurrency bounds how many connections are being dialed and
	// handshaken at once, so that opening thousands does not overrun the
	// server's listen backlog. Zero means DefaultDialConcurrency (64).
	DialConcurrency int

	// Timeout bounds each dial plus handshake, and each operation after
	// the end of Duration. Zero means DefaultTimeout (10 s).
	Timeout time.Duration

	// Wait is how long to keep retrying the first connection while the
	// server is not up yet (a script that has just started it). Zero
	// means no retry.
	Wait time.Duration

	// PID is the process ID of the server, on this machine, whose CPU
	// time and memory to sample (Linux only). Zero means none.
	PID int

	// Settle is how long after the last connection opened the idle mode
	// samples the server's memory, and the scale mode starts measuring a
	// point: long enough for the server to finish with handshakes and
	// free their memory. Zero means DefaultSettle (3 s).
	Settle time.Duration
}

const (
	// maxSize is server.MaxMessageLimit, the largest body a server can be
	// configured to accept.
	maxSize = 16 << 20
	// maxBatch bounds a pipelined batch. A connection writes its whole
	// batch before it reads a reply, so the batch and its replies must fit
	// in the socket buffers between the two ends (loopback's grow to
	// megabytes), or both ends would wait on each other for ever.
	maxBatch = 256 << 10
	// fdReserve is what the process keeps of its open-file limit for
	// itself: standard streams, the runtime's poller, /proc reads.
	fdReserve = 32
)

func (o Options) resolve() (Options, error) {
	switch o.Mode {
	case ModeHandshake, ModeEcho, ModePipeline, ModeIdle, ModeScale:
	case "":
		return o, fmt.Errorf("no mode: want one of %v", Modes())
	default:
		return o, fmt.Errorf("unknown mode %q: want one of %v", o.Mode, Modes())
	}
	if _, _, err := net.SplitHostPort(o.Addr); err != nil {
		return o, fmt.Errorf("server address %q: want HOST:PORT: %w", o.Addr, err)
	}
	if o.DTLS != nil && (o.TLSConfig != nil || o.Resume) {
		return o, fmt.Errorf("DTLS options with a TLS config or session resumption: DTLS sessions are not resumed")
	}
	if o.Resume && o.TLSConfig == nil {
		return o, fmt.Errorf("session resumption needs TLS: the plaintext mode has no sessions")
	}
	if o.Mode != ModePipeline && o.Depth > 1 {
		return o, fmt.Errorf("a depth of %d is for the pipeline mode, not %s", o.Depth, o.Mode)
	}
	if o.Mode == ModeScale {
		if o.Conns != 0 {
			return o, fmt.Errorf("the scale mode takes its connection counts from the points, not from a number of connections (%d)", o.Conns)
		}
		if o.Points == nil {
			o.Points = DefaultPoints
		}
		if len(o.Points) == 0 {
			return o, fmt.Errorf("the scale mode needs at least one point")
		}
		for i, p := range o.Points {
			if p <= 0 {
				return o, fmt.Errorf("point %d is not a positive number of connections", p)
			}
			if i > 0 && p <= o.Points[i-1] {
				return o, fmt.Errorf("points must increase: %d after %d", p, o.Points[i-1])
			}
		}
		o.Points = append([]int(nil), o.Points...)
		o.Conns = o.Points[len(o.Points)-1]
	} else if o.Points != nil {
		return o, fmt.Errorf("points are for the scale mode, not %s", o.Mode)
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Interval < 0 {
		return o, fmt.Errorf("interval %v is negative", o.Interval)
	}
	for _, v := range []struct {
		name string
		v    *int
		def  int
	}{
		{"connections", &o.Conns, DefaultConns},
		{"depth", &o.Depth, DefaultDepth},
		{"size", &o.Size, DefaultSize},
		{"dial concurrency", &o.DialConcurrency, DefaultDialConcurrency},
	} {
		if *v.v == 0 {
			*v.v = v.def
		}
		if *v.v < 0 {
			return o, fmt.Errorf("%s %d is negative", v.name, *v.v)
		}
	}
	if o.Mode != ModePipeline {
		o.Depth = 1
	}
	if limit := fdLimit(); limit > 0 && o.Conns > limit-fdReserve {
		return o, fmt.Errorf("%d connections need as many file descriptors, and this process may open %d (leaving %d for itself): lower the connections, or raise the limit (ulimit -n)", o.Conns, limit, fdReserve)
	}
	if o.Size > maxSize {
		return o, fmt.Errorf("size %d is over %d bytes, the largest message a server can be configured to accept", o.Size, maxSize)
	}
	if batch := o.Depth * (proto.HeaderSize + o.Size); batch > maxBatch {
		return o, fmt.Errorf("a pipelined batch of %d ECHOs of %d bytes is %d bytes, over %d: lower the depth or the size", o.Depth, o.Size, batch, maxBatch)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"duration", &o.Duration, DefaultDuration},
		{"timeout", &o.Timeout, DefaultTimeout},
		{"settle time", &o.Settle, DefaultSettle},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			return o, fmt.Errorf("%s %v is negative", d.name, *d.v)
		}
	}
	if o.Wait < 0 {
		return o, fmt.Errorf("wait %v is negative", o.Wait)
	}
	if o.Count == 0 {
		o.Count = DefaultCount
	}
	if o.Count < 0 {
		return o, fmt.Errorf("count %d is negative", o.Count)
	}
	if o.PID < 0 {
		return o, fmt.Errorf("pid %d is negative", o.PID)
	}
	if o.PID > 0 && runtime.GOOS != "linux" {
		return o, fmt.Errorf("sampling process %d: %w (this is %s)", o.PID, ErrNoProc, runtime.GOOS)
	}
	return o, nil
}
