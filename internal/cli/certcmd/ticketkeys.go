package certcmd

import (
	"fmt"
	"io"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/cobra"
)

type ticketKeysOptions struct {
	keep int
	json bool
}

func newTicketKeysCmd(*Env) *cobra.Command {
	o := &ticketKeysOptions{}
	cmd := &cobra.Command{
		Use:   "ticket-keys FILE",
		Short: "Make or rotate a session-ticket key file shared by several servers",
		Long: `ticket-keys puts a new random session-ticket key first in FILE, keeps the
newest keys already there (--keep in all, the new one included) and replaces
the file atomically with mode 0600; a missing FILE is created.

Servers started with sc-server --ticket-keys FILE encrypt session tickets
with the first key and decrypt with every key in the file, so a client
resumes its session on any of them. They reload the file when it changes
(or on SIGHUP); a key that leaves the file still decrypts for
--ticket-key-rotation (default 12h), then sessions under it need a full
handshake.

Run it from one place about every 12 hours (a timer, a cron job), where
every server reads the file. Keep the file secret: whoever has it can
decrypt the recorded TLS 1.2 sessions of every server that uses it.`,
		Example: `  sc-cert ticket-keys /etc/space-captain/tickets
  sc-cert ticket-keys --keep 3 /etc/space-captain/tickets`,
		Args: cli.ExactArgs(1, "the ticket-key FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTicketKeys(cmd.OutOrStdout(), args[0], o)
		},
	}
	cmd.Flags().IntVar(&o.keep, "keep", pki.DefaultTicketKeysKeep, fmt.Sprintf("how many keys the file holds afterwards, the new one included (`N`, 1 to %d)", pki.MaxTicketKeys))
	cmd.Flags().BoolVar(&o.json, "json", false, "print the result as JSON (never the keys)")
	return cmd
}

func runTicketKeys(stdout io.Writer, path string, o *ticketKeysOptions) error {
	if o.keep < 1 || o.keep > pki.MaxTicketKeys {
		return cli.Usagef("--keep %d: want 1 to %d", o.keep, pki.MaxTicketKeys)
	}
	if err := pki.RotateTicketKeyFile(path, pki.TicketKeyFileOptions{Keep: o.keep}); err != nil {
		return cli.WithHint(err, "the file must hold only ticket keys, one per line as 64 hex digits; move it away to start afresh")
	}
	data, _, err := trustfile.Read(path, trustfile.TicketKeys)
	if err != nil {
		return err
	}
	keys, err := pki.ParseTicketKeys(data)
	if err != nil {
		return err
	}
	if o.json {
		return cli.PrintJSON(stdout, struct {
			File string `json:"file"`
			Keys int    `json:"keys"`
			Mode string `json:"mode"`
		}{path, len(keys), "0600"})
	}
	fmt.Fprintf(stdout, "Wrote %s: a new key first, %d in all (mode 0600). Servers using it pick it up on their own.\n", path, len(keys))
	return nil
}
