package server

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// How the epoll engine's workers share the polling.
//
// One worker leads: it polls, queues the connections that events name,
// and signals idle workers to serve them (a worker serves whatever is
// queued before it waits again). When a poll finds exactly one connection
// ready and nothing else queued, or more than the idle workers can take,
// the leader serves one itself and then polls again, so that a lone
// connection goes from the poller's wake-up to its read without passing
// between goroutines: waking another goroutine costs a thread wake-up,
// which made a lone connection's round trip over half as long again
// (docs/BENCHMARKS.md, "Figures behind the server's choices").
//
// While the leader serves, nobody polls; that is one connection's run,
// short unless a Keys or Events callback is slow. So the sweeper's
// watchdog makes an idle worker lead too when a leader's run has lasted
// leadStallAfter, and the slow one steps down once its run ends (see
// leadWatch). Leaders can thus be several for a while; RawRead lets one at
// a time poll (internal/poll FD.RawRead holds the descriptor's read lock).
// Work queued
// from outside the workers (drain, a swept deadline, the hand-off) signals
// an idle worker, or wakes a parked leader through an eventfd in the
// epoll set when none is idle.

// leadStallAfter is how long a leader may serve one connection before the
// watchdog makes another worker lead; watchEvery is how often the watchdog
// looks, at most: each look wakes the process, so that an idle server with
// connections spends a few tenths of a percent of a core on it at most
// (docs/BENCHMARKS.md has the figures for 4, 10 and 20 looks a second).
const (
	leadStallAfter = 10 * time.Millisecond
	watchEvery     = 100 * time.Millisecond
)

// worker is worker i of the pool: it serves connections until the engine
// halts, leading when given the lead, and serving what is queued when
// signalled.
func (e *epollEngine) worker(i int, leading bool) {
	events := make([]unix.EpollEvent, 64)
	for {
		if leading {
			if !e.leadWhile(i, events) {
				return
			}
			leading = false
		}
		if c, _ := e.popReady(); c != nil {
			e.serveQueued(c, e.s.now())
			continue
		}
		select {
		case <-e.signal:
		case <-e.lead:
			leading = true
		case <-e.quit:
			return
		}
	}
}

// leadWhile polls, dispatches and serves as worker i until the watchdog
// has replaced it (true) or the engine halts (false).
func (e *epollEngine) leadWhile(i int, events []unix.EpollEvent) bool {
	w := &e.lw[i]
	var got *conn
	failed := false
	poll := func(uintptr) bool {
		for {
			n, err := unix.EpollWait(e.epfd, events, 0)
			if err == unix.EINTR {
				// epoll_wait is never restarted after a signal handler
				// (signal(7)), and Go preempts goroutines with signals:
				// poll again, for parking now could leave events behind.
				continue
			}
			if err != nil {
				failed = true // EBADF, EINVAL: cannot happen while the file is open
				return true
			}
			if n > 0 {
				e.dispatch(events[:n])
			}
			// One connection ready: serve it here. More: signal idle
			// workers, and serve one here too if they are too few.
			if q := e.readyLen(); q == 1 || (q > 1 && e.signalWorkers(q) < q) {
				if got, _ = e.popReady(); got != nil {
					return true
				}
			}
			if n < len(events) {
				// Parking now is safe: an event after this epoll_wait makes
				// epfd readable again, which wakes RawRead's wait.
				return false
			}
		}
	}
	for {
		got = nil
		if err := e.rc.Read(poll); err != nil || failed {
			return false // the file is closed: the engine has halted
		}
		now := e.s.now()
		w.busySince.Store(now)
		e.serveQueued(got, now)
		w.busySince.Store(0)
		if w.replaced.Swap(false) {
			return true // another worker leads in this one's stead
		}
	}
}

// leadWatch is a worker's state as a leader, for the watchdog: when it
// began serving a connection itself (Server.now, 0 while it polls),
// and whether the watchdog has made another worker lead in its stead.
// Each replaced flag stands for one worker promoted, and a leader steps
// down only by clearing its own, so at least one leader is always left.
type leadWatch struct {
	busySince atomic.Int64
	replaced  atomic.Bool
}

// watchLeaders makes an idle worker lead for each leader that has served
// one connection for leadStallAfter or more; now is a Server.now reading.
func (e *epollEngine) watchLeaders(now int64) {
	for i := range e.lw {
		w := &e.lw[i]
		if b := w.busySince.Load(); b != 0 && now-b >= int64(leadStallAfter) && !w.replaced.Load() && e.promote() {
			w.replaced.Store(true)
		}
	}
}

// signalWorkers wakes up to n idle workers to serve what is queued.
func (e *epollEngine) signalWorkers(n int) (signalled int) {
	for ; signalled < n; signalled++ {
		select {
		case e.signal <- struct{}{}:
		default:
			return signalled
		}
	}
	return signalled
}

// promote makes an idle worker lead, if there is one.
func (e *epollEngine) promote() bool {
	select {
	case e.lead <- struct{}{}:
		return true
	default:
		return false
	}
}

// serveQueued serves c, taken from the ready queue at now (Server.now).
func (e *epollEngine) serveQueued(c *conn, now int64) {
	c.loop.sched.Store(schedRunning) // from schedQueued, which notify leaves alone
	e.run(c, now)
}

// run serves c, which this goroutine has marked running at now
// (Server.now), until it parks or ends.
func (e *epollEngine) run(c *conn, now int64) {
	lc := &c.loop
	for {
		e.serveReady(c, now)
		if lc.sched.CompareAndSwap(schedRunning, schedIdle) || lc.sched.Load() == schedDone {
			return
		}
		lc.sched.Store(schedRunning)
		now = e.s.now()
	}
}

// dispatch queues the connections that events name.
func (e *epollEngine) dispatch(events []unix.EpollEvent) {
	wakeup := false
	e.mu.Lock()
	for i := range events {
		ev := &events[i]
		fd := int(ev.Fd)
		if fd == e.evfd {
			wakeup = true
			continue
		}
		if fd < len(e.table) {
			if c := e.table[fd]; c != nil && c.loop.t.gen == uint32(ev.Pad) {
				c.loop.events.Or(ev.Events)
				e.notify(c)
			}
		}
	}
	e.mu.Unlock()
	if wakeup {
		var b [8]byte
		_, _ = unix.Read(e.evfd, b[:]) // reset the counter
	}
}

// notify makes c's worker serve it: it queues c unless c is queued or
// being served already, in which case that run serves it again. From
// outside the workers, call wake after it.
func (e *epollEngine) notify(c *conn) {
	lc := &c.loop
	for {
		switch lc.sched.Load() {
		case schedIdle:
			if lc.sched.CompareAndSwap(schedIdle, schedQueued) {
				e.pushReady(c)
				return
			}
		case schedRunning:
			if lc.sched.CompareAndSwap(schedRunning, schedAgain) {
				return
			}
		default:
			return
		}
	}
}

// wake makes the workers serve what is queued: it signals an idle worker,
// or, if none is idle, wakes a leader parked in RawRead through the
// eventfd in the epoll set.
func (e *epollEngine) wake() {
	if e.signalWorkers(1) == 1 {
		return
	}
	e.mu.Lock()
	if e.running {
		one := [8]byte{1}
		_, _ = unix.Write(e.evfd, one[:]) // native-endian 1; any non-zero count wakes
	}
	e.mu.Unlock()
}

// readyLen returns how many connections wait in the ready queue.
func (e *epollEngine) readyLen() int {
	e.qmu.Lock()
	defer e.qmu.Unlock()
	return len(e.ready) - e.readyHead
}

func (e *epollEngine) pushReady(c *conn) {
	e.qmu.Lock()
	e.ready = append(e.ready, c)
	e.qmu.Unlock()
}

// popReady takes the oldest queued connection, if any, and says whether
// more are queued.
func (e *epollEngine) popReady() (c *conn, more bool) {
	e.qmu.Lock()
	defer e.qmu.Unlock()
	if e.readyHead == len(e.ready) {
		return nil, false
	}
	c = e.ready[e.readyHead]
	e.ready[e.readyHead] = nil
	e.readyHead++
	switch {
	case e.readyHead == len(e.ready):
		e.ready, e.readyHead = e.ready[:0], 0
	case e.readyHead >= 1024 && 2*e.readyHead >= len(e.ready):
		// A queue that never empties: move its rest to the front.
		n := copy(e.ready, e.ready[e.readyHead:])
		clear(e.ready[n:])
		e.ready, e.readyHead = e.ready[:n], 0
	}
	return c, e.readyHead < len(e.ready)
}

// sweeper, until quit is closed: every tick, it wakes the connections
// whose idle or write deadline has passed (their worker checks and ends
// them) and applies the memory policy; at least every watchEvery it checks
// that no leader has been serving one connection for leadStallAfter.
func (e *epollEngine) sweeper(quit <-chan struct{}) {
	t := time.NewTicker(min(e.tick, watchEvery))
	defer t.Stop()
	var expired []*conn
	var nextSweep time.Time
	for {
		var now time.Time
		select {
		case now = <-t.C:
		case <-quit:
			return
		}
		ns := e.s.now()
		e.watchLeaders(ns)
		if now.Before(nextSweep) {
			continue
		}
		nextSweep = now.Add(e.tick)
		e.checkMemory(now)
		e.mu.Lock()
		for _, c := range e.table {
			if c == nil {
				continue
			}
			t := &c.loop.t
			if wb := t.writeBy.Load(); wb != 0 {
				if ns >= wb {
					expired = append(expired, c)
				}
			} else if ns >= t.readBy.Load() {
				expired = append(expired, c)
			}
		}
		e.mu.Unlock()
		for i, c := range expired {
			e.notify(c)
			expired[i] = nil
		}
		if len(expired) > 0 {
			e.wake()
		}
		expired = expired[:0]
	}
}
