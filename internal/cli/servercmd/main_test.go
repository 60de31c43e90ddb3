package servercmd

import (
	"fmt"
	"os"
	"testing"

	"github.com/spacecaptain/spacecaptain/internal/cli"
)

// TestMain makes every command the tests run read no configuration file
// (cli.NoConfigFiles): a file installed on the machine must not change a
// result.
func TestMain(m *testing.M) {
	if err := cli.NoConfigFiles(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
