package clientcmd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/cobra"
)

// identityNone is the --identity value that presents no identity, even
// when the default one exists.
const identityNone = "none"

// DefaultIdentityPath returns the default identity key: "identity" in the
// space-captain folder of the user's configuration directory, unless
// $SC_CLIENT_IDENTITY names another ("" for none).
func DefaultIdentityPath() (string, error) {
	if v, ok := os.LookupEnv(cli.IdentityEnv); ok {
		return v, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding the default identity: %w (give its path with --identity)", err)
	}
	return filepath.Join(dir, "space-captain", "identity"), nil
}

// identity returns the client certificate to present when a server asks
// for one: --identity FILE, else the default identity when it exists; nil
// for none. It warns on stderr when the default exists but cannot be read,
// and presents none then.
func (o *options) identity(st *streams) (*tls.Certificate, error) {
	switch o.identityFile {
	case identityNone:
		return nil, nil
	case "":
		def, err := DefaultIdentityPath()
		if err != nil || def == "" {
			return nil, nil
		}
		if _, err := os.Stat(def); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		c, err := cli.LoadIdentity(def, st.env.Now)
		if err != nil {
			st.warnf("not presenting the default identity: %v", err)
			return nil, nil
		}
		return c, nil
	}
	return cli.LoadIdentity(o.identityFile, st.env.Now)
}

// newIdentityCmd returns sc-client identity and its subcommands.
func newIdentityCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Make or show the key sc-client proves who you are with",
		Long: `identity manages your player key, as ssh-keygen manages ssh keys. A server
that admits players by key (sc-server --client-allow) knows you by its pin:
hand the pin to its operator (sc-cert clients allow PIN --name YOU).

sc-client presents the default identity (identity in the space-captain
folder of your configuration directory, or $SC_CLIENT_IDENTITY) whenever a
server asks for a client certificate, and --identity FILE presents another
(--identity none: none). A certificate beside the key (FILE.crt, or for
FILE.key FILE.crt) is presented with it, e.g. one from sc-cert create
--client; otherwise a certificate made in memory for the key.`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("unknown command %q for %q", args[0], c.CommandPath()),
					fmt.Sprintf("run '%s --help' for usage", c.CommandPath()))
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	cmd.AddCommand(newIdentityNewCmd(env), newIdentityShowCmd())
	return cmd
}

func identityPathFlag(cmd *cobra.Command, p *string) {
	def, err := DefaultIdentityPath()
	if err != nil || def == "" {
		def = "identity in the space-captain folder of the user's configuration directory"
	}
	cmd.Flags().StringVar(p, "file", "", "identity key `FILE` (default "+def+")")
}

func resolveIdentityPath(p string) (string, error) {
	if p != "" {
		return p, nil
	}
	def, err := DefaultIdentityPath()
	if err != nil {
		return "", err
	}
	if def == "" {
		return "", cli.Usagef("$%s is set empty (no default identity): name the file with --file", cli.IdentityEnv)
	}
	return def, nil
}

func newIdentityNewCmd(env *Env) *cobra.Command {
	var file string
	var keyType pki.KeyType
	var force, asJSON bool
	cmd := &cobra.Command{
		Use:   "new",
		Short: "Make a new identity key and print its pin",
		Long: `new makes a private key (mode 0600, written atomically) at the default identity
path, or --file, and prints its pin: the string a server operator allows
(sc-cert clients allow PIN). An existing key is never replaced unless
--force is given, which changes your pin.`,
		Example: `  sc-client identity new
  sc-client identity new --key-type ed25519 --file ~/game.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := resolveIdentityPath(file)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return fmt.Errorf("creating the directory of %s: %w", path, err)
			}
			key, err := pki.GenerateKey(keyType)
			if err != nil {
				return err
			}
			if err := pki.WriteKeyFile(path, key, pki.WriteOptions{Overwrite: force}); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return cli.WithHint(fmt.Errorf("%s exists: not replacing it (its pin is the one servers know you by)", path), "show its pin with: sc-client identity show; replace it with --force")
				}
				return err
			}
			pin := cli.PinOfKey(key)
			if asJSON {
				return cli.PrintJSON(cmd.OutOrStdout(), struct {
					Path string `json:"path"`
					Pin  string `json:"pin"`
				}{path, pin.String()})
			}
			desc, _ := cli.DescribeKey(key.Public())
			fmt.Fprintf(cmd.OutOrStdout(), "Created %s (%s, mode 0600)\nPin: %s\n", path, desc, pin)
			fmt.Fprintf(cmd.OutOrStdout(), "Give the pin to the server's operator: sc-cert clients allow %s --name NAME\n", pin)
			return nil
		},
	}
	_ = env
	identityPathFlag(cmd, &file)
	cmd.Flags().Var(keyTypeFlag{&keyType}, "key-type", "key `type`: "+strings.Join(keyTypeNames(), ", ")+" (default ecdsa-p256)")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing key (your pin changes)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the path and pin as JSON")
	cli.CompleteValues(cmd, "key-type", keyTypeNames()...)
	return cmd
}

func newIdentityShowCmd() *cobra.Command {
	var file string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the pin of the identity key, to hand to a server's operator",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := resolveIdentityPath(file)
			if err != nil {
				return err
			}
			k, err := pki.ReadKeyFile(path, pki.KeyOptions{Passphrase: (&cli.Passphrase{}).Source("the identity key " + path)})
			if err != nil {
				return cli.WithHint(fmt.Errorf("reading the identity %s: %w", path, err), "make one with: sc-client identity new")
			}
			pin := cli.PinOfKey(k.Signer)
			cert := cli.IdentityCertPath(path)
			if asJSON {
				return cli.PrintJSON(cmd.OutOrStdout(), struct {
					Path        string `json:"path"`
					Pin         string `json:"pin"`
					Certificate string `json:"certificate,omitempty"`
				}{path, pin.String(), cert})
			}
			fmt.Fprintln(cmd.OutOrStdout(), pin)
			return nil
		},
	}
	identityPathFlag(cmd, &file)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the path, pin and certificate file as JSON")
	return cmd
}

// keyTypeFlag is a --key-type flag.
type keyTypeFlag struct{ t *pki.KeyType }

func (f keyTypeFlag) String() string { return string(*f.t) }
func (f keyTypeFlag) Set(s string) error {
	t, err := pki.ParseKeyType(s)
	if err != nil {
		return err
	}
	*f.t = t
	return nil
}
func (keyTypeFlag) Type() string { return "type" }

func keyTypeNames() []string {
	var n []string
	for _, t := range pki.KeyTypes() {
		n = append(n, string(t))
	}
	return n
}
