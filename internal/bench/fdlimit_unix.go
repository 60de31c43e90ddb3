//go:build unix

package bench

import "syscall"

// fdLimit returns this process's open-file limit, or 0 if unknown. Go
// raises the soft limit to the hard one at startup (since Go 1.19), so
// this is the hard limit; the benchmark raises nothing itself.
func fdLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0
	}
	return int(rl.Cur)
}
