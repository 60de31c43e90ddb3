package bench

import "time"

// ProcSample is one reading of a process's resource use from /proc.
type ProcSample struct {
	// CPU is the CPU time the process has used, user plus system (utime
	// and stime in /proc/PID/stat), to 10 ms: Linux reports it in clock
	// ticks of 1/100 s (USER_HZ, fixed by the kernel's ABI whatever its
	// internal HZ).
	CPU time.Duration
	// RSS is the resident set size, VmRSS in /proc/PID/status, in bytes
	// (the kernel reports whole KiB).
	RSS int64
	// FDs is the number of open file descriptors, the entries of
	// /proc/PID/fd: sockets, files, the runtime's poller.
	FDs int
}

// ReadProc reads the CPU time, resident set size and open file
// descriptors of process pid from /proc (the descriptors of another user's
// process need root). It works on Linux only; elsewhere it returns an error wrapping
// [ErrNoProc].
func ReadProc(pid int) (ProcSample, error) { return readProc(pid) }
