//go:build !windows

package servercmd

import (
	"errors"
	"syscall"
)

// addrInUse reports whether err is a bind that failed because the address
// is taken (EADDRINUSE).
func addrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }
