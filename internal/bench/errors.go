package bench

import "errors"

// ErrNoProc is returned by [ReadProc], and by [New] for an [Options.PID],
// on a system without Linux's /proc.
var ErrNoProc = errors.New("bench: reading a process's CPU time and memory needs Linux's /proc")

// ErrNoConnection is returned by [Bench.Run] when not one connection could
// be opened (its message says why the first attempt failed).
var ErrNoConnection = errors.New("bench: could not connect to the server")
