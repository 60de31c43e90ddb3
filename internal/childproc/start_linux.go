package childproc

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// forker is the goroutine, locked to its OS thread for the life of the
// process, that forks every child: a parent-death signal fires when the
// forking thread exits, and this one never does. It is package state, and
// has to be: one such thread serves every caller, and it starts at the
// first Start.
var forker struct {
	once sync.Once
	reqs chan forkRequest
}

type forkRequest struct {
	cmd  *exec.Cmd
	done chan error
}

func start(cmd *exec.Cmd) error {
	forker.once.Do(func() {
		forker.reqs = make(chan forkRequest)
		go func() {
			// Never unlocked, and the goroutine never returns: the
			// thread lives as long as the process.
			runtime.LockOSThread()
			for r := range forker.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if cmd.SysProcAttr.Pdeathsig == 0 {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	done := make(chan error, 1)
	forker.reqs <- forkRequest{cmd, done}
	return <-done
}
