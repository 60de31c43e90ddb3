package soak

import "syscall"

// serverAttr makes the kernel send sc-server SIGTERM if the soak driver
// dies without stopping it (say, SIGKILL), so that no server outlives the
// run. It is started with childproc.Start, which forks it from a thread
// that lives as long as the driver: the kernel sends the signal when the
// forking thread exits.
func serverAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
