package interop

import (
	"os/exec"
	"strings"
	"sync"
	"testing"
)

var (
	serverHelpOnce sync.Once
	serverHelp     string
	serverHelpErr  error
)

// serverHasFlag reports whether the sc-server under test has the long
// flag name (without its dashes), from its --help. Tests use it for flags
// that are being added while they are written: they pass the flag once it
// exists and say in their log when they had to leave it out.
func serverHasFlag(t *testing.T, name string) bool {
	t.Helper()
	serverHelpOnce.Do(func() {
		out, err := exec.Command(bin(t, "sc-server"), "--help").CombinedOutput()
		serverHelp, serverHelpErr = string(out), err
	})
	if serverHelpErr != nil {
		t.Fatalf("sc-server --help: %v\n%s", serverHelpErr, serverHelp)
	}
	return strings.Contains(serverHelp, "--"+name+" ")
}
