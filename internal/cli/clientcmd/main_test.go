package clientcmd

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/spacecaptain/spacecaptain/internal/cli"
)

// TestMain makes every command the tests run read no configuration file
// (cli.NoConfigFiles): a file installed on the machine must not change a
// result.
func TestMain(m *testing.M) {
	if os.Getenv(clientProcessEnv) == "1" {
		// The test binary re-run as sc-client, for tests that need many
		// client processes at once.
		cmd := NewRootCmd(Env{IsTerminal: func() bool { return false }})
		cmd.SetArgs(os.Args[1:])
		os.Exit(cli.Main(context.Background(), cmd))
	}
	if err := cli.NoConfigFiles(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// clientProcessEnv set to 1 makes the test binary run sc-client with its
// arguments instead of the tests.
const clientProcessEnv = "SC_CLIENT_TEST_PROCESS"
