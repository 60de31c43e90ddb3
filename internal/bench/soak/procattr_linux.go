package soak

import "syscall"

// serverAttr makes the kernel send sc-server SIGTERM if the soak driver
// dies without stopping it (say, SIGKILL), so that no server outlives the
// run.
func serverAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
