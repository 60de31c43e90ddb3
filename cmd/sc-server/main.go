// Command sc-server serves the Space Captain protocol over TLS, on port
// 4242 with certs/server.crt by default (made on the first run). Run
// sc-server --help for its flags and exit codes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/cli/servercmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, servercmd.NewRootCmd(servercmd.Env{}))
	stop()
	os.Exit(code)
}
