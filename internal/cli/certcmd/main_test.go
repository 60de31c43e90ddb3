package certcmd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/spacecaptain/spacecaptain/internal/cli"
)

// binDir holds the real sc-cert, built once by TestMain for the testscript
// tests.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if err := cli.NoConfigFiles(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "sc-cert-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "sc-cert"+exeSuffix()), "github.com/spacecaptain/spacecaptain/cmd/sc-cert")
	cmd.Env = os.Environ()
	if os.Getenv("GOTOOLCHAIN") == "" {
		// go.mod asks for a newer Go than the machine may have.
		cmd.Env = append(cmd.Env, "GOTOOLCHAIN=auto")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building sc-cert: %v\n%s", err, out)
		return 1
	}
	binDir = dir
	return m.Run()
}
