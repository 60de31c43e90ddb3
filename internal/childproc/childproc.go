package childproc

import (
	"bytes"
	"errors"
	"os/exec"
)

// Start starts cmd as cmd.Start does, so that on Linux it is killed when
// the calling process dies (see the package documentation). A
// SysProcAttr.Pdeathsig already set is kept; the rest of SysProcAttr is
// left as given.
func Start(cmd *exec.Cmd) error { return start(cmd) }

// Run starts cmd with [Start] and waits for it, as cmd.Run does.
func Run(cmd *exec.Cmd) error {
	if err := Start(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// Output runs cmd with [Run] and returns its standard output, as
// cmd.Output does; on an *exec.ExitError its Stderr holds what the command
// wrote to standard error, when cmd.Stderr was nil.
func Output(cmd *exec.Cmd) ([]byte, error) {
	if cmd.Stdout != nil {
		return nil, errors.New("childproc: Stdout already set")
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	captured := cmd.Stderr == nil
	if captured {
		cmd.Stderr = &stderr
	}
	err := Run(cmd)
	var ee *exec.ExitError
	if captured && errors.As(err, &ee) {
		ee.Stderr = stderr.Bytes()
	}
	return stdout.Bytes(), err
}

// CombinedOutput runs cmd with [Run] and returns its standard output and
// standard error together, as cmd.CombinedOutput does.
func CombinedOutput(cmd *exec.Cmd) ([]byte, error) {
	if cmd.Stdout != nil {
		return nil, errors.New("childproc: Stdout already set")
	}
	if cmd.Stderr != nil {
		return nil, errors.New("childproc: Stderr already set")
	}
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := Run(cmd)
	return b.Bytes(), err
}
