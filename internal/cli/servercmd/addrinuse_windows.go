package servercmd

import (
	"errors"

	"golang.org/x/sys/windows"
)

// addrInUse reports whether err is a bind that failed because the address
// is taken: WSAEADDRINUSE, which syscall.EADDRINUSE does not match on
// Windows.
func addrInUse(err error) bool { return errors.Is(err, windows.WSAEADDRINUSE) }
