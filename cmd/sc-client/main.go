// Command sc-client talks the Space Captain protocol to a server: echo,
// reverse, time, keys and chat, trusting the server by CA, pin or on first
// use. Run sc-client --help for its flags and exit codes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/cli/clientcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, clientcmd.NewRootCmd(clientcmd.Env{}))
	stop()
	os.Exit(code)
}
