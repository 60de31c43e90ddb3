package childproc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// roleEnv makes the test binary play a part in TestChildDiesWithParent
// instead of running the tests.
const roleEnv = "CHILDPROC_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "parent":
		parentMain()
	case "child":
		// Echo lines, so that a child that is alive answers; then, once
		// standard input closes (the parent is gone), stay, as a server
		// does.
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			fmt.Println(sc.Text())
		}
		for {
			time.Sleep(time.Hour)
		}
	}
	os.Exit(m.Run())
}

// parentMain is a test-like parent: it starts a child with Start from a
// goroutine locked to its thread, which then returns — the Go runtime ends
// that thread, as it does when a test helper locks one. The child must
// outlive the thread (a parent-death signal bound to the forking thread
// would have killed it) and die only with this process. It prints the
// child's PID once it has seen the child answer after the thread ended,
// then waits to be killed.
func parentMain() {
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "parent: "+format+"\n", args...)
		os.Exit(3)
	}
	type started struct {
		cmd *exec.Cmd
		in  io.WriteCloser
		out *bufio.Reader
		tid int
		err error
	}
	ch := make(chan started, 1)
	// The main thread is never ended (the runtime parks it instead): keep
	// it for this goroutine, so that the one below runs on another.
	runtime.LockOSThread()
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		s := started{cmd: exec.Command(os.Args[0]), tid: syscall.Gettid()}
		s.cmd.Env = append(os.Environ(), roleEnv+"=child")
		in, err := s.cmd.StdinPipe()
		if err != nil {
			s.err = err
		}
		out, err := s.cmd.StdoutPipe()
		if err != nil {
			s.err = err
		}
		if s.err == nil {
			s.err = Start(s.cmd)
		}
		s.in, s.out = in, bufio.NewReader(out)
		ch <- s
	}()
	s := <-ch
	if s.err != nil {
		fail("starting the child: %v", s.err)
	}
	// Wait for the kernel to have ended that thread: there is no event to
	// wait on for another thread's exit, so look, briefly and boundedly.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", s.tid)); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			fail("the locked thread %d did not end", s.tid)
		}
		time.Sleep(time.Millisecond)
	}
	// Its parent-death signal, had it been bound to that thread, was sent
	// as the thread exited, before it left /proc: a child killed then
	// cannot answer.
	if _, err := fmt.Fprintln(s.in, "ping"); err != nil {
		fail("the child is gone after its starting thread ended: %v", err)
	}
	if line, err := s.out.ReadString('\n'); err != nil || line != "ping\n" {
		fail("the child is gone after its starting thread ended: read %q, %v", line, err)
	}
	fmt.Println(s.cmd.Process.Pid)
	for {
		time.Sleep(time.Hour) // until killed
	}
}

// A child started with Start is killed when its parent dies without
// stopping it (SIGKILL, as go test's timeout or an OOM kill do), even
// though the thread that started it had ended long before.
func TestChildDiesWithParent(t *testing.T) {
	parent := exec.Command(os.Args[0], "-test.run=^$")
	parent.Env = append(os.Environ(), roleEnv+"=parent")
	parent.Stderr = os.Stderr
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := Start(parent); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	pidLine := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		pidLine <- line
		exited <- parent.Wait()
	}()
	var child int
	select {
	case line := <-pidLine:
		if child, err = strconv.Atoi(strings.TrimSpace(line)); err != nil {
			parent.Process.Kill()
			t.Fatalf("the parent did not report a live child (%q): %v", line, <-exited)
		}
	case <-time.After(30 * time.Second):
		parent.Process.Kill()
		t.Fatal("the parent did not start its child within 30s")
	}
	// A handle on the child, taken while its PID cannot have been reused:
	// it becomes readable when the child exits.
	pidfd, err := unix.PidfdOpen(child, 0)
	if err != nil {
		parent.Process.Kill()
		t.Fatalf("pidfd_open(%d): %v", child, err)
	}
	defer unix.Close(pidfd)

	if err := parent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 10_000)
	for err == unix.EINTR {
		n, err = unix.Poll(fds, 10_000)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		_ = unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		t.Fatalf("child %d still runs 10s after its parent was killed", child)
	}
}
