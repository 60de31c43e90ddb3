//go:build linux

package interop

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Issue 7, file-descriptor exhaustion: the real sc-server under a low
// open-file limit (256, soft and hard, set on the running process with
// prlimit(2) as `prlimit --pid` does, and read back from
// /proc/PID/limits), flooded with more connections than the limit allows,
// on both engines. While the flood holds every descriptor it can get, the
// connections the server already had keep being answered, accept() fails
// with EMFILE and the server backs off (its pause grows to its maximum,
// about a second) and logs the failure at most once a second, and it
// does not spin: its CPU time stays small. When the flood's connections
// close, it accepts and completes new handshakes by itself, its
// descriptors come back to where they were, and it is the same process
// throughout.
func TestFDExhaustionRealServer(t *testing.T) {
	const (
		limit = 256
		// flood is more connections than the limit allows; those the
		// server cannot accept wait in the listen queue (the kernel
		// completes their TCP handshakes: somaxconn is 4096 here).
		flood = 600
		// hold is how long the flood is held once the server is out of
		// descriptors: long enough for several accept pauses at their
		// one-second maximum.
		hold = 3 * time.Second
		// keepers are the TLS connections established before the flood.
		keepers = 4
	)
	args := []string{
		// The flood holds its descriptors until it closes them.
		"--handshake-timeout", "30s",
		// Per-source limits would turn the flood away before it reaches
		// the descriptor limit: every connection here comes from 127.0.0.1.
		"--source-max-conns=0", "--source-handshake-rate=0",
	}
	for _, engine := range hostileEngines() {
		t.Run(engine, func(t *testing.T) {
			dir := t.TempDir()
			srv := startSCServer(t, dir, append([]string{"--engine", engine}, args...)...)
			pid := srv.proc.Pid
			setNofile(t, pid, limit)
			pool := caPool(t, dir)
			expectServed(t, srv, pool)

			var kept []*tls.Conn
			for i := range keepers {
				v := []uint16{tls.VersionTLS12, tls.VersionTLS13}[i%2]
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", srv.Addr,
					&tls.Config{RootCAs: pool, MinVersion: v, MaxVersion: v})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if err := echoOver(c, "kept"); err != nil {
					t.Fatal(err)
				}
				kept = append(kept, c)
			}
			base := settledFDs(t, pid)
			if base.fds > limit/4 {
				t.Fatalf("the server holds %d descriptors before the flood: too close to the limit of %d for the test to mean anything", base.fds, limit)
			}

			// The flood: plain TCP connections that never send a byte.
			began := time.Now()
			conns := dialFlood(t, srv.Addr, flood)
			closeFlood := sync.OnceFunc(func() {
				for _, c := range conns {
					c.Close()
				}
			})
			defer closeFlood()
			// The server runs out of descriptors and says so.
			waitLog(t, srv, 0, 20*time.Second, `"msg":"accept failed; pausing"`)
			if st := readProc(t, pid); st.fds < limit-8 {
				t.Errorf("the server holds %d descriptors during the flood, want about its limit of %d", st.fds, limit)
			}

			// Held: the kept connections are answered all along, and the
			// server's CPU time stays small.
			cpu0, at0 := cpuTime(t, pid), time.Now()
			for round := 0; time.Since(at0) < hold; round++ {
				for i, c := range kept {
					if err := echoOver(c, fmt.Sprintf("kept %d, flood round %d", i, round)); err != nil {
						t.Fatalf("a connection made before the flood, during it: %v\n%s", err, tail(srv.Log(), 20))
					}
				}
				time.Sleep(100 * time.Millisecond) // a pace, not a wait for anything
			}
			cpu, wall := cpuTime(t, pid)-cpu0, time.Since(at0)
			t.Logf("flood of %d connections held for %v: the server used %v of CPU, %v", len(conns), wall.Round(time.Millisecond), cpu, readProc(t, pid))
			// An accept loop that retried at once would burn a whole core
			// (wall of CPU, or more with several threads); backing off to a
			// pause of up to 1 s it costs next to nothing, and the kept
			// connections' echoes a few milliseconds. A fifth of the wall
			// time is far above the one and far below the other, even on a
			// busy shared machine (CPU time, not wall time, is measured).
			if cpu > wall/5 {
				t.Errorf("the server used %v of CPU in %v of flood: it spins instead of backing off", cpu, wall)
			}

			// The flood ends; the server recovers by itself.
			closeFlood()
			ended := time.Now()
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", srv.Addr, &tls.Config{RootCAs: pool})
			if err != nil {
				t.Fatalf("a new client after the flood: %v\n%s", err, tail(srv.Log(), 20))
			}
			err = echoOver(c, "after the flood")
			c.Close()
			if err != nil {
				t.Fatalf("a new client after the flood: %v", err)
			}
			recovered := time.Since(ended)
			// The last pause is at most 1 s, then the queued connections
			// of the flood are accepted and end at once (EOF).
			if recovered > 10*time.Second {
				t.Errorf("a new client was served %v after the flood ended, want within 10s", recovered)
			}
			st := waitFDs(t, srv, base)
			t.Logf("served a new client %v after the flood ended; descriptors back to %d (before: %d)", recovered.Round(time.Millisecond), st.fds, base.fds)
			for i, c := range kept {
				if err := echoOver(c, fmt.Sprintf("kept %d, after the flood", i)); err != nil {
					t.Fatalf("a connection made before the flood, after it: %v", err)
				}
			}
			expectServed(t, srv, pool)

			// The accept failures were logged at a limited rate, with a
			// pause that grew to its maximum.
			fails := acceptFailures(t, srv)
			span := time.Since(began)
			if len(fails) == 0 || len(fails) > int(span/time.Second)+2 {
				t.Errorf("%d accept-failure warnings in %v, want at least one and at most one a second", len(fails), span.Round(time.Millisecond))
			}
			var longest time.Duration
			suppressed := 0
			for _, f := range fails {
				longest = max(longest, f.Pause)
				suppressed += f.Suppressed
				if !strings.Contains(f.Err, "too many open files") {
					t.Errorf("accept failed with %q, want EMFILE (too many open files)", f.Err)
				}
			}
			if longest < 500*time.Millisecond {
				t.Errorf("the longest accept pause was %v, want it to grow towards 1s", longest)
			}
			t.Logf("%d accept-failure warnings in %v (%d more suppressed), longest pause %v", len(fails), span.Round(time.Millisecond), suppressed, longest)

			// Never restarted: the process that started is still running,
			// and it started serving once.
			select {
			case <-srv.done:
				t.Fatalf("sc-server exited: %v\n%s", srv.exitErr, tail(srv.Log(), 20))
			default:
			}
			if n := countLog(srv, `"msg":"serving"`); n != 1 {
				t.Errorf("the server logged %d serving lines, want 1", n)
			}
			if n := countLog(srv, `"level":"ERROR"`); n > 0 {
				t.Errorf("the server logged %d errors:\n%s", n, tail(srv.Log(), 20))
			}
			expectNoPanic(t, srv)
		})
	}
}

// setNofile sets the open-file limit of process pid, soft and hard, to n
// (prlimit(2), as `prlimit --pid PID --nofile=n:n`), and checks it in
// /proc/PID/limits. Lowering a limit needs no privilege.
func setNofile(t *testing.T, pid, n int) {
	t.Helper()
	lim := unix.Rlimit{Cur: uint64(n), Max: uint64(n)}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatalf("setting the open-file limit of process %d to %d: %v", pid, n, err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Max open files"); ok {
			if f := strings.Fields(rest); len(f) < 2 || f[0] != strconv.Itoa(n) || f[1] != strconv.Itoa(n) {
				t.Fatalf("/proc/%d/limits: %q, want a soft and hard limit of %d", pid, sc.Text(), n)
			}
			return
		}
	}
	t.Fatalf("/proc/%d/limits has no open-file limit:\n%s", pid, b)
}

// dialFlood opens n TCP connections to addr, 32 at a time, and returns
// them; the test's end closes them.
func dialFlood(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var (
		mu    sync.Mutex
		conns []net.Conn
		errs  []error
		wg    sync.WaitGroup
	)
	next := make(chan struct{})
	for range 32 {
		wg.Go(func() {
			for range next {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		})
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	if len(errs) > 0 {
		t.Fatalf("%d of %d flood connections failed, the first: %v", len(errs), n, errs[0])
	}
	return conns
}

// cpuTime returns the user and system CPU time process pid has used, from
// /proc/PID/stat (utime and stime, fields 14 and 15, in clock ticks of
// 1/100 s: USER_HZ is 100 on every Linux architecture Go supports).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// the fields after it start at field 3.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/stat: %q", pid, s)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// acceptFailure is a warning of the server's accept loop.
type acceptFailure struct {
	Err        string        `json:"err"`
	Pause      time.Duration `json:"pause"`
	Suppressed int           `json:"suppressed"`
}

// acceptFailures returns the accept-failure warnings srv has logged.
func acceptFailures(t *testing.T, srv *scServer) []acceptFailure {
	t.Helper()
	var out []acceptFailure
	for _, line := range strings.Split(srv.Log(), "\n") {
		if !strings.Contains(line, `"msg":"accept failed; pausing"`) {
			continue
		}
		var f acceptFailure
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, f)
	}
	return out
}
