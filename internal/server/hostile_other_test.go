//go:build !linux

package server

import "testing"

// openFDs returns -1: only Linux's /proc counts the descriptors.
func openFDs(testing.TB) int { return -1 }
