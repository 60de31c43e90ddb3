//go:build !linux

package childproc

import "os/exec"

// start is cmd.Start: the parent-death signal, and the thread rule behind
// the dedicated forking thread, are Linux's (the platform the tests and
// load tools run on).
func start(cmd *exec.Cmd) error { return cmd.Start() }
