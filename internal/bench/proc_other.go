//go:build !linux

package bench

import "fmt"

func readProc(pid int) (ProcSample, error) {
	return ProcSample{}, fmt.Errorf("reading process %d: %w", pid, ErrNoProc)
}
