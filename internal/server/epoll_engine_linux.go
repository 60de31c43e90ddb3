package server

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"golang.org/x/sys/unix"
)

const engineEpoll = "epoll"

// The events a connection is registered for: input and the peer's end of
// stream, edge-triggered; and with EPOLLOUT once a write has found the
// socket full.
const (
	epollIn  = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET
	epollOut = epollIn | unix.EPOLLOUT
)

// epollEngine drives established connections from an epoll set of its
// own with a bounded pool of workers, so that an idle connection has no
// goroutine and no buffer of the server's: only its socket, its tls.Conn
// and a slot in the engine's table. The package doc says what it does;
// the comments here say how.
//
// A connection's life up to its handshake is every engine's (conn.go),
// over the connection's transport in its blocking mode; then serve hands
// the socket off (handOff) into the epoll set, and from then on a worker
// serves it whenever epoll reports it ready (serveReady), until it ends.
//
// One worker at a time leads the polling (epoll_poll_linux.go): it serves
// a lone ready connection itself, so that no event waits for one goroutine
// to wake another, and signals idle workers when more is ready. The
// epoll descriptor is registered with Go's netpoller (an epoll descriptor
// is pollable; os.NewFile registers a non-blocking one), so a polling
// worker parks like any goroutine instead of holding a thread in
// epoll_wait.
//
// The race detector cannot see an ordering through epoll, so a connection
// moves between goroutines only through mutexes (the hand-off inserts it
// in the engine's table, where the poller finds it; the poller puts it in
// the ready queue, where a worker takes it) and an atomic scheduling state
// (loopConn.sched: one goroutine at a time serves it; an event that comes
// meanwhile makes that goroutine serve it again).
type epollEngine struct {
	s       *Server
	workers int           // the pool's size
	tick    time.Duration // how often deadlines are swept
	qBound  int           // a transport's output bound
	qPool   sync.Pool     // output queue buffers (*[]byte)

	// queued counts writes that found the socket full (tests).
	queued atomic.Int64
	// gen numbers hand-offs, for the epoll events' tags.
	gen atomic.Uint32
	// started: the engine has been started (it may have halted since).
	started atomic.Bool
	// handoffs counts connections that entered the epoll set; releases,
	// the times the memory policy returned freed memory; releasing is set
	// while it does.
	handoffs, releases atomic.Int64
	releasing          atomic.Bool
	// The memory policy's state and settings (see
	// Options.KeepFreedMemory), the sweeper's own.
	policy memoryPolicy
	// startLog limits the warning that the engine cannot start.
	startLog logLimiter
	// The workers (epoll_poll_linux.go): an idle worker receives from
	// signal to serve what is queued, and from lead to become a leader; lw
	// is what the watchdog knows of each worker as a leader.
	signal chan struct{}
	lead   chan struct{}
	lw     []leadWatch

	mu      sync.Mutex
	running bool // the workers and the sweeper run
	halted  bool // stopped for good: no more hand-offs
	epfd    int
	evfd    int      // an eventfd in the epoll set, to wake a parked poller
	file    *os.File // epfd, registered with Go's netpoller
	rc      syscall.RawConn
	table   []*conn       // the connections in the epoll set, by descriptor
	count   int           // connections in the epoll set or entering it
	quit    chan struct{} // closed when the engine halts: ends the sweeper

	// ready holds the connections waiting for a worker (schedQueued),
	// oldest first, from ready[readyHead:]. Each is there at most once, so
	// it never holds more than the connections.
	qmu       sync.Mutex
	ready     []*conn
	readyHead int
}

// Scheduling states of a connection in the loop — the epoll set and the
// workers that serve it — kept in loopConn.sched. A connection is served by
// one goroutine at a time: an event that comes while it is being served
// makes that goroutine serve it once more.
const (
	schedIdle    int32 = iota // parked: the next event queues it
	schedQueued               // in the ready queue
	schedRunning              // a worker serves it
	schedAgain                // a worker serves it, and it must serve it again
	schedDone                 // ended
)

// loopConn is the epoll engine's state for one connection.
type loopConn struct {
	t      transport
	sched  atomic.Int32
	events atomic.Uint32 // epoll events since the last run

	// The owner's: the first run done, and the reason to close once the
	// output queue has drained. (A frame begun stays in the conn's input
	// between runs.)
	started   bool
	endReason string
	endErr    error

	// registered: in e.table and e.count (guarded by e.mu).
	registered bool
}

func newEpollEngine(s *Server) *epollEngine {
	o := s.opts
	// Deadlines are swept, so a connection is cut up to one tick late;
	// the tick is a sixteenth of the shorter timeout, within bounds that
	// keep an idle server's wake-ups rare and a test's timeouts precise.
	tick := min(o.IdleTimeout, o.WriteTimeout) / 16
	tick = min(max(tick, 5*time.Millisecond), 250*time.Millisecond)
	outSize := s.flushAt + proto.HeaderSize + max(o.MaxMessage, maxErrorReply)
	return &epollEngine{
		s:       s,
		workers: max(4, 2*runtime.GOMAXPROCS(0)),
		tick:    tick,
		// One batch of replies is at most outSize, plus TLS record
		// overhead; the bound leaves room for crypto/tls's own writes
		// (KeyUpdate answers, alerts) behind it. Nothing is read while
		// output is queued, so only a peer that does not read reaches it.
		qBound: 2*outSize + 16<<10,
		policy: memoryPolicy{
			off:   o.KeepFreedMemory,
			burst: 1000,
			quiet: time.Second,
			every: 10 * time.Second,
		},
		startLog: logLimiter{every: time.Second},
	}
}

// memoryPolicy returns the heap memory a burst of handshakes freed to the
// operating system once the burst is over (Options.KeepFreedMemory). What a
// TLS handshake allocates is garbage once it is done, but Go's heap keeps
// the pages it occupied until its background scavenger returns them,
// slowly: seconds after a burst of handshakes, the pages they freed were
// about as much again as the idle connections' live heap
// (docs/BENCHMARKS.md, "Figures behind the server's choices").
type memoryPolicy struct {
	off   bool
	burst int64         // at least this many hand-offs since the last release
	quiet time.Duration // and none for this long
	every time.Duration // and the last release this long ago

	seen       int64     // hand-offs counted at the last check
	seenAt     time.Time // when that count last changed
	releasedAt int64     // hand-offs counted at the last release
	lastAt     time.Time
}

// checkMemory applies the memory policy; the sweeper calls it every tick.
func (e *epollEngine) checkMemory(now time.Time) {
	p := &e.policy
	if p.off {
		return
	}
	n := e.handoffs.Load()
	if n != p.seen {
		p.seen, p.seenAt = n, now
		return
	}
	if n-p.releasedAt < p.burst || now.Sub(p.seenAt) < p.quiet || now.Sub(p.lastAt) < p.every {
		return
	}
	if !e.releasing.CompareAndSwap(false, true) {
		return
	}
	p.releasedAt, p.lastAt = n, now
	// Off the sweeper: the collection takes tens of milliseconds, and the
	// sweeps must go on.
	go func() {
		defer e.releasing.Store(false)
		debug.FreeOSMemory()
		e.releases.Add(1)
	}()
}

// socket returns c's transport, which passes everything to c's blocking
// socket until the hand-off. A connection that a listener wraps (a PROXY
// protocol reader, say) may hold bytes the socket no longer has, which the
// loop would never see: it gets the blocking socket alone, and stays on
// its goroutine.
func (e *epollEngine) socket(c *conn) net.Conn {
	gs := c.blockingSocket()
	tcp, ok := c.nc.(*net.TCPConn)
	if !ok {
		return gs
	}
	t := &c.loop.t
	t.c, t.eng, t.pre, t.tcp, t.fd, t.epfd = c, e, gs, tcp, -1, -1
	return t
}

// serve hands c to the loop, or, when it cannot, serves c on this
// goroutine as the goroutine engine does.
func (e *epollEngine) serve(c *conn) {
	if c.sock == &c.loop.t && e.handOff(c) {
		return
	}
	// Wrapped by its listener, or no loop for it (the server is stopping,
	// or out of descriptors for the dup).
	reason, err := c.serveBlocking()
	e.s.finish(c, reason, err)
}

// handOff moves c from Go's netpoller to the loop and serves it once; it
// reports whether it did. If not, c is still the runtime's, untouched.
func (e *epollEngine) handOff(c *conn) bool {
	s := e.s
	tcp := c.loop.t.tcp
	if s.stopping.Load() || (!e.started.Load() && !e.start()) {
		return false
	}
	// Take the socket from the runtime: a dup of its descriptor, then
	// close the runtime's, which removes the runtime's epoll registration
	// (internal/poll FD.Close → runtime netpollclose, EPOLL_CTL_DEL) while
	// the dup keeps the socket open. (TCPConn.File would dup too, but
	// registers the new descriptor with the runtime again.) The dup shares
	// the open file description, so it is non-blocking already.
	fd, err := dupSocket(tcp)
	if err != nil {
		return false // out of descriptors, say: serve c where it is
	}
	lc := &c.loop
	t := &lc.t
	t.gen = e.gen.Add(1)
	t.readBy.Store(s.now() + int64(s.opts.IdleTimeout))
	t.mu.Lock()
	t.fd, t.loop = fd, true
	forced := c.forced.Load()
	t.mu.Unlock()
	_ = tcp.Close()
	if forced {
		// forceClose came between the dup and the switch: it closed the
		// runtime's descriptor only.
		_ = unix.Shutdown(fd, unix.SHUT_RDWR)
	}

	// This goroutine serves c's first run itself, so c is "running" before
	// anything can see it: events, the sweep and drain only ask for
	// another run, which it then leaves to the workers.
	lc.sched.Store(schedRunning)
	e.handoffs.Add(1)
	// The table lock is the happens-before edge from this goroutine to the
	// workers (the race detector cannot see one through epoll): a polling
	// worker finds c under it. The count keeps the engine, and so epfd,
	// alive until release.
	e.mu.Lock()
	stopping := s.stopping.Load()
	if !stopping {
		lc.registered = true
		e.count++
		if fd >= len(e.table) {
			e.table = append(e.table, make([]*conn, fd+1-len(e.table)+len(e.table)/2)...)
		}
		e.table[fd] = c
	}
	epfd := e.epfd
	e.mu.Unlock()
	if stopping {
		// Shutdown began during the hand-off and may have swept the table
		// already: end c here, as a connection that went idle would.
		lc.sched.Store(schedDone)
		s.finish(c, CloseShutdown, nil)
		return true
	}

	// Edge-triggered: an event comes each time more data arrives, never
	// again for data already there, so every run reads until would-block.
	// EPOLLOUT is left out until a write finds the socket full (armOut):
	// registered with it, a connection would be reported writable at once,
	// for a run with nothing to do.
	t.epfd = epfd
	ev := unix.EpollEvent{Events: epollIn, Fd: int32(fd), Pad: int32(t.gen)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		lc.sched.Store(schedDone)
		s.finish(c, CloseReadError, fmt.Errorf("registering with epoll: %w", os.NewSyscallError("epoll_ctl", err)))
		return true
	}
	// The first run: data sent right after the client's Finished may sit
	// inside crypto/tls already (its reads take what the socket has, conn.go
	// readFromUntil), where no epoll event will ever announce it. Runs
	// that events ask for are the workers'.
	e.serveReady(c, s.now())
	if !lc.sched.CompareAndSwap(schedRunning, schedIdle) && lc.sched.CompareAndSwap(schedAgain, schedQueued) {
		e.pushReady(c)
		e.wake()
	}
	return true
}

// start starts the engine unless it has been, and reports whether it
// runs.
func (e *epollEngine) start() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.halted {
		return false
	}
	if !e.running {
		if err := e.startLocked(); err != nil {
			s := e.s
			if ok, suppressed := e.startLog.allow(time.Now()); ok {
				s.log.Warn("epoll engine cannot start; serving connections on goroutines", "err", err, "suppressed", suppressed)
			}
			return false
		}
	}
	return true
}

// dupSocket returns a close-on-exec duplicate of tcp's descriptor.
func dupSocket(tcp *net.TCPConn) (int, error) {
	rc, err := tcp.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(sfd uintptr) { fd, derr = unix.FcntlInt(sfd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl", derr)
	}
	return fd, nil
}

// release takes c out of the loop and closes its descriptor; its
// transport's Close calls it, on c's owner.
func (e *epollEngine) release(c *conn) {
	t := &c.loop.t
	e.mu.Lock()
	if c.loop.registered {
		c.loop.registered = false
		if e.table[t.fd] == c {
			e.table[t.fd] = nil
		}
		e.count--
	}
	e.unlockAndHalt(e.maybeHaltLocked())
	// Closing the last descriptor of the socket also takes it out of the
	// epoll set (epoll(7)).
	t.mu.Lock()
	_ = unix.Close(t.fd)
	t.fd = -1
	t.mu.Unlock()
}

// startLocked starts the workers and the sweeper.
func (e *epollEngine) startLocked() error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(evfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(evfd)
		unix.Close(epfd)
		return os.NewSyscallError("epoll_ctl", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(evfd)
		unix.Close(epfd)
		return os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(epfd), "epoll")
	rc, err := f.SyscallConn()
	// NewFile registers a non-blocking descriptor with the netpoller when
	// it can; deadlines work only on one it registered.
	if err == nil {
		err = f.SetReadDeadline(time.Time{})
	}
	if err != nil {
		f.Close()
		unix.Close(evfd)
		return fmt.Errorf("registering the epoll descriptor with the runtime: %w", err)
	}
	e.epfd, e.evfd, e.file, e.rc, e.running = epfd, evfd, f, rc, true
	e.started.Store(true)
	e.quit = make(chan struct{})
	e.signal = make(chan struct{})
	e.lead = make(chan struct{})
	e.lw = make([]leadWatch, e.workers)
	for i := range e.workers {
		go e.worker(i, i == 0)
	}
	go e.sweeper(e.quit)
	return nil
}

// maybeHaltLocked halts the engine once the server is stopping and no
// connection is left in the epoll set. It returns true if the caller must
// finish the halt with unlockAndHalt: closing the epoll file, which waits
// for the polling worker to let go of it, must happen without e.mu, which
// that worker may be waiting for.
func (e *epollEngine) maybeHaltLocked() bool {
	if e.count > 0 || !e.s.stopping.Load() {
		return false
	}
	e.halted = true
	if !e.running {
		return false
	}
	e.running = false
	close(e.quit)
	return true
}

// unlockAndHalt unlocks e.mu and, if halt, ends the workers: they return
// once the epoll file is closed. wake never writes to the eventfd once
// running is false, so it can be closed then.
func (e *epollEngine) unlockAndHalt(halt bool) {
	e.mu.Unlock()
	if halt {
		e.file.Close()
		unix.Close(e.evfd)
	}
}

func (e *epollEngine) stop() {
	e.mu.Lock()
	e.unlockAndHalt(e.maybeHaltLocked())
}

// abort closes c hard for forceClose. In the loop, it shuts the socket
// down rather than closing it: c's worker may be using the descriptor,
// whose number must not be reused under it. The shutdown wakes c with an
// end of stream, and its owner finishes it.
func (e *epollEngine) abort(c *conn) {
	t := &c.loop.t
	t.mu.Lock()
	if t.loop {
		if t.fd >= 0 {
			_ = unix.Shutdown(t.fd, unix.SHUT_RDWR)
		}
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	c.nc.Close()
}

// drain wakes every connection in the loop, so that the idle ones close
// (each run checks s.stopping) and the busy ones close when they go idle,
// and wakes the others as the goroutine engine does.
func (e *epollEngine) drain() {
	e.mu.Lock()
	var wake []*conn
	for _, c := range e.table {
		if c != nil {
			wake = append(wake, c)
		}
	}
	e.mu.Unlock()
	e.s.drainBlocked(func(c *conn) bool { return c.loop.t.inLoop() })
	for _, c := range wake {
		e.notify(c)
	}
	e.wake()
}

func (e *epollEngine) getQueue(n int) []byte {
	if p, ok := e.qPool.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]byte, 0, max(n, 16<<10))
}

func (e *epollEngine) putQueue(q []byte) {
	if cap(q) <= 64<<10 {
		q = q[:0]
		e.qPool.Put(&q)
	}
}
