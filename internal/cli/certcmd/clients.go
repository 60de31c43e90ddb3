package certcmd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/cobra"
)

// Default client list files, beside the server's certificates.
var (
	defaultAllowFile   = filepath.Join(pki.DefaultLayout("").Dir, "clients.allow")
	defaultRevokedFile = filepath.Join(pki.DefaultLayout("").Dir, "clients.revoked")
)

const clientsLong = `clients edits the lists sc-server admits and refuses players by
(--client-allow and --client-revoked):

  allow    admit a player's key by its pin, with a name for logs and KEYS
  revoke   refuse a key (by pin) or a certificate (by serial) from now on,
           whatever admits it; a running server cuts its live sessions
  list     what the lists hold

Each edit takes a lock on the file (FILE.lock) and replaces the file
atomically, so edits from several processes at once lose nothing and a
server watching the file never reads half of one; it reloads the file
within a second. Comment lines are not kept by an edit.

The formats are in docs/TRUST.md, "Client identity".`

// newClientsCmd returns sc-cert clients and its subcommands.
func newClientsCmd(_ *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "clients",
		Short: "Admit, revoke and list the players a server accepts",
		Long:  clientsLong,
		Example: `  sc-cert clients allow sha256//...= --name alice --file certs/clients.allow
  sc-cert clients revoke sha256//...= --file certs/clients.revoked
  sc-cert clients revoke 6b:85:52:77:63:0e:15:74 --issuer certs/client-ca.crt --file certs/clients.revoked
  sc-cert clients list --json`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("unknown command %q for %q", args[0], c.CommandPath()),
					fmt.Sprintf("run '%s --help' for usage", c.CommandPath()))
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	cmd.AddCommand(newClientsAllowCmd(), newClientsRevokeCmd(), newClientsListCmd())
	return cmd
}

// keyPin reads a pin from an argument: a pin (sha256//…, base64 or hex),
// or a file holding a certificate or a key.
func keyPin(arg string) (pinning.Pin, error) {
	p, err := pinning.ParsePin(arg)
	if err == nil {
		return p, nil
	}
	if _, serr := os.Stat(arg); serr == nil {
		return pinning.ReadPinFile(arg)
	}
	return pinning.Pin{}, err
}

func newClientsAllowCmd() *cobra.Command {
	var file, name, comment string
	cmd := &cobra.Command{
		Use:   "allow PIN|FILE",
		Short: "Admit a player's key by its pin",
		Long: `allow adds a key's pin to the allow list (or renames a pin already there).
PIN is sha256//… as sc-client identity show prints it, or a certificate or
key file whose key's pin is meant.`,
		Example: `  sc-cert clients allow sha256//...= --name alice
  sc-cert clients allow alice.crt --name alice --file /etc/space-captain/clients.allow`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := keyPin(args[0])
			if err != nil {
				return cli.WithCode(cli.ExitUsage, err, "give the pin sc-client identity show prints (sha256//…), or a certificate or key file")
			}
			if name != "" && !pinning.ValidClientName(name) {
				return cli.Usagef("--name %q: want 1 to %d letters, digits or . _ - @ +", name, pinning.MaxClientNameLen)
			}
			if strings.ContainsAny(comment, "\n\r") {
				return cli.Usagef("--comment holds a newline")
			}
			var changed bool
			err = pinning.EditAllowList(file, func(l *pinning.AllowList) (bool, error) {
				changed = l.Allow(pinning.AllowEntry{Pin: p, Name: name, Comment: comment})
				return changed, nil
			})
			if err != nil {
				return err
			}
			if changed {
				fmt.Fprintf(cmd.OutOrStdout(), "Allowed %s%s in %s\n", p, nameSuffix(name), file)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s%s was already allowed in %s\n", p, nameSuffix(name), file)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", defaultAllowFile, "allow list `FILE` (sc-server --client-allow); made if missing")
	cmd.Flags().StringVar(&name, "name", "", "the player's `NAME`, shown in the server's logs and KEYS (letters, digits, . _ - @ +)")
	cmd.Flags().StringVar(&comment, "comment", "", "free `TEXT` kept after the entry")
	return cmd
}

func nameSuffix(name string) string {
	if name == "" {
		return ""
	}
	return " (" + name + ")"
}

func newClientsRevokeCmd() *cobra.Command {
	var file, issuer, comment string
	cmd := &cobra.Command{
		Use:   "revoke PIN|SERIAL|FILE",
		Short: "Refuse a player's key or certificate from now on",
		Long: `revoke adds a key's pin, or a certificate's serial number qualified by its
issuer, to the revoke list. A running sc-server reloads the list within a
second, refuses new handshakes and resumptions of the revoked player and,
with --revoke-live cut (its default), closes the player's live sessions.

PIN is sha256//… (or 64 hex digits), or a certificate or key file. SERIAL
is the certificate's serial in hex (as sc-cert inspect prints it), qualified
by the key of the CA that issued it (--issuer, default
certs/client-ca.crt): serial numbers are unique only per issuer.`,
		Example: `  sc-cert clients revoke sha256//...=
  sc-cert clients revoke alice.crt --comment "lost laptop"
  sc-cert clients revoke 6b:85:52:77:63:0e:15:74:cd:c6:27:db:48:c4:c3:99`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.ContainsAny(comment, "\n\r") {
				return cli.Usagef("--comment holds a newline")
			}
			e := pinning.RevokeEntry{Comment: comment}
			if p, err := keyPin(args[0]); err == nil {
				e.Pin = p
			} else {
				serial, serr := pinning.ParseSerial(args[0])
				if serr != nil {
					return cli.WithCode(cli.ExitUsage, fmt.Errorf("%q is neither a pin, a certificate or key file, nor a serial number", args[0]),
						"give sha256//…, a file, or a serial in hex such as 6b:85:52:77")
				}
				ca, err := pki.ReadCertificateFile(issuer)
				if err != nil {
					return cli.WithHint(fmt.Errorf("reading the issuer of serial %s: %w", args[0], err), "name the client CA that issued it with --issuer FILE")
				}
				e.Serial, e.Issuer = serial, pinning.PinOf(ca)
			}
			var changed bool
			err := pinning.EditRevokeList(file, func(l *pinning.RevokeList) (bool, error) {
				changed = l.Revoke(e)
				return changed, nil
			})
			if err != nil {
				return err
			}
			what := e.String()
			if changed {
				fmt.Fprintf(cmd.OutOrStdout(), "Revoked %s in %s\n", what, file)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s was already revoked in %s\n", what, file)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", defaultRevokedFile, "revoke list `FILE` (sc-server --client-revoked); made if missing")
	cmd.Flags().StringVar(&issuer, "issuer", filepath.Join(pki.DefaultLayout("").Dir, pki.ClientCACertFile), "with a SERIAL, the certificate `FILE` of the CA that issued it")
	cmd.Flags().StringVar(&comment, "comment", "", "free `TEXT` kept after the entry (why, when)")
	return cmd
}

type clientsJSON struct {
	Allow   []allowJSON  `json:"allow"`
	Revoked []revokeJSON `json:"revoked"`
}

type allowJSON struct {
	Pin     string `json:"pin"`
	Name    string `json:"name,omitempty"`
	Comment string `json:"comment,omitempty"`
}

type revokeJSON struct {
	Pin     string `json:"pin,omitempty"`
	Serial  string `json:"serial,omitempty"`
	Issuer  string `json:"issuer,omitempty"`
	Comment string `json:"comment,omitempty"`
}

func newClientsListCmd() *cobra.Command {
	var allowFile, revokedFile string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Show the allow and revoke lists",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := clientsJSON{Allow: []allowJSON{}, Revoked: []revokeJSON{}}
			al, err := pinning.ReadAllowList(allowFile)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			for _, e := range entriesOrNone(al) {
				out.Allow = append(out.Allow, allowJSON{e.Pin.String(), e.Name, e.Comment})
			}
			rl, err := pinning.ReadRevokeList(revokedFile)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			if rl != nil {
				for _, e := range rl.Entries {
					j := revokeJSON{Comment: e.Comment}
					if e.Serial != "" {
						j.Serial, j.Issuer = e.Serial, e.Issuer.String()
					} else {
						j.Pin = e.Pin.String()
					}
					out.Revoked = append(out.Revoked, j)
				}
			}
			if asJSON {
				return cli.PrintJSON(cmd.OutOrStdout(), out)
			}
			printClients(cmd.OutOrStdout(), allowFile, revokedFile, al, rl)
			return nil
		},
	}
	cmd.Flags().StringVar(&allowFile, "allow", defaultAllowFile, "allow list `FILE`")
	cmd.Flags().StringVar(&revokedFile, "revoked", defaultRevokedFile, "revoke list `FILE`")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the lists as JSON")
	return cmd
}

func entriesOrNone(l *pinning.AllowList) []pinning.AllowEntry {
	if l == nil {
		return nil
	}
	return l.Entries
}

func printClients(w io.Writer, allowFile, revokedFile string, al *pinning.AllowList, rl *pinning.RevokeList) {
	if al == nil {
		fmt.Fprintf(w, "%s: none (no file)\n", allowFile)
	} else {
		fmt.Fprintf(w, "%s: %d allowed\n", allowFile, al.Len())
		for _, e := range al.Entries {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	if rl == nil {
		fmt.Fprintf(w, "%s: none (no file)\n", revokedFile)
	} else {
		fmt.Fprintf(w, "%s: %d revoked\n", revokedFile, rl.Len())
		for _, e := range rl.Entries {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}
