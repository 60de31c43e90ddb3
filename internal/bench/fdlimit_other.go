//go:build !unix

package bench

func fdLimit() int { return 0 }
