package dtls

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/protocol"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// The environment that makes this test binary a client process for
// TestIdleSessionCost (TestMain runs helperClients instead of the tests).
const (
	helperAddrEnv = "SC_DTLS_TEST_HELPER_ADDR"
	helperNEnv    = "SC_DTLS_TEST_HELPER_N"
)

// What an idle session costs the server, counted in its own process with
// the clients in another (this test binary run as TestHelperClients), so
// that only the server's side is measured: pion/dtls's two goroutines per
// connection and none of the server's, and its heap and stacks under the
// docs/BENCHMARKS.md target of 48 KiB (that target is for RSS under load;
// this counts live heap and stacks after a GC, a steadier measure). The
// server before the detached-mode front end held four goroutines and
// about 73 KiB per idle session.
func TestIdleSessionCost(t *testing.T) {
	n := 400
	if raceEnabled {
		n = 100
	}
	e := start(t, Options{})
	g0, m0 := serverCost()

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperAddrEnv+"="+e.addr.String(), helperNEnv+"="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the client process: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stdin.Close()
			if err := <-done; err != nil {
				t.Errorf("client process: %v", err)
			}
		}
	}
	defer stop()
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		if strings.TrimSpace(line) != "ready" {
			t.Fatalf("client process said %q, want ready", line)
		}
	case err := <-done:
		stopped = true
		t.Fatalf("client process ended before its sessions were open: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("client process: no sessions open after 2 minutes")
	}
	e.rec.waitFor(t, "every session answered", 30*time.Second, func() bool { return e.rec.active == n && e.rec.messages[proto.Echo] == n })

	g1, m1 := serverCost()
	goroutines := float64(g1-g0) / float64(n)
	bytes := (float64(m1) - float64(m0)) / float64(n)
	t.Logf("%d idle sessions: %.2f goroutines and %.1f KiB of heap and stacks each, on the server's side", n, goroutines, bytes/1024)
	if g1-g0 > 2*n+4 {
		t.Errorf("%.2f goroutines per idle session, want at most 2 (pion's)", goroutines)
	}
	if !raceEnabled && bytes > 48<<10 {
		t.Errorf("%.1f KiB per idle session, over 48 KiB", bytes/1024)
	}

	stop()
	// The clients' close_notify datagrams come all at once and a loaded
	// machine may drop some (UDP): a session whose close_notify was lost
	// is closed by the idle sweep, as a vanished client's is.
	e.rec.waitFor(t, "the sessions closed", DefaultIdleTimeout+DefaultIdleTimeout/16+15*time.Second, func() bool { return e.rec.active == 0 })
}

// serverCost returns this process's goroutines and its live heap and
// stacks, after a collection.
func serverCost() (int, uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.HeapAlloc + ms.StackInuse
}

// helperClients is this test binary's work when TestIdleSessionCost runs
// it with helperAddrEnv set: it opens that many sessions to the server
// there, each with one ECHO answered, prints "ready", and holds them until
// its stdin closes. It returns the exit code.
func helperClients() int {
	raddr, err := net.ResolveUDPAddr("udp", os.Getenv(helperAddrEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	n, err := strconv.Atoi(os.Getenv(helperNEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	conns := make([]*piondtls.Conn, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range conns {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := helperDial(raddr)
			if err != nil {
				errs <- fmt.Errorf("session %d: %w", i, err)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	close(errs)
	if err := <-errs; err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// helperDial opens one session and has one ECHO answered, trying again
// on loss as sc-client does.
func helperDial(raddr *net.UDPAddr) (*piondtls.Conn, error) {
	var err error
	for range 5 {
		var pc *net.UDPConn
		pc, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, err
		}
		var c *piondtls.Conn
		c, err = piondtls.Client(pc, raddr, piondtls.WithInsecureSkipVerify(true),
			piondtls.WithMaxVersion(protocol.Version1_2),
			piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
			piondtls.WithConnectionID(piondtls.OnlySendCIDGenerator(), piondtls.CIDPathMigrationRRC))
		if err != nil {
			pc.Close()
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = c.HandshakeContext(ctx)
		cancel()
		if err == nil {
			req := proto.AppendFrame(nil, proto.Echo, []byte("idle"))
			buf := make([]byte, 256)
			for range 5 {
				if _, err = c.Write(req); err != nil {
					break
				}
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err = c.Read(buf); err == nil {
					_ = c.SetReadDeadline(time.Time{})
					return c, nil
				}
			}
		}
		c.Close()
		pc.Close()
	}
	return nil, err
}
