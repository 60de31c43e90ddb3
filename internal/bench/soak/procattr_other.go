//go:build !linux

package soak

import "syscall"

// serverAttr is nil outside Linux, which has no parent-death signal; the
// soak needs Linux's /proc anyway.
func serverAttr() *syscall.SysProcAttr { return nil }
