package server

import (
	"os"
	"testing"
)

// openFDs returns how many descriptors the process has open.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open descriptors: %v", err)
	}
	return len(ents) - 1 // the directory's own, open while it is read
}
