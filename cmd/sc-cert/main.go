// Command sc-cert makes, inspects, verifies and rotates the keys and
// certificates of a Space Captain server. Run sc-cert --help for the
// commands and their exit codes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/cli/certcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, certcmd.NewRootCmd(certcmd.Env{}))
	stop()
	os.Exit(code)
}
