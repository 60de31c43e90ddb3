package certcmd

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/atomicfile"
	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/cobra"
)

// residueWarning is what export-next says about the copy it leaves behind:
// it can only unlink the file.
const residueWarning = "sc-cert can only unlink the original: a copy may remain in backups, snapshots and the disk's free blocks; if that matters, treat the key as exposed and make a new one offline instead"

type exportNextOptions struct {
	dir, nextKey, to string
	force            bool
	json             bool
	pass             *cli.Passphrase
}

type exportNextJSON struct {
	NextKey string `json:"next_key"` // where the private key was
	Public  string `json:"public"`   // server.next.pub
	MovedTo string `json:"moved_to"` // where the private key is now
	Pin     string `json:"pin"`
	Warning string `json:"warning"`
}

func newExportNextCmd(env *Env) *cobra.Command {
	o := &exportNextOptions{pass: env.passphrase()}
	cmd := &cobra.Command{
		Use:   "export-next --to PATH",
		Short: "Take the next key offline: leave only its public half (server.next.pub) on the server",
		Long: `export-next moves the private half of the next key (server.next.key) to PATH,
a place the operator names (a removable disk, an offline machine's import
folder), and writes its public half beside it as server.next.pub. sc-server
announces the public key's pin in KEYS exactly as it announced the next key,
without holding the private key, so a break-in on the server no longer
steals the key it will roll over to.

At the rollover, bring the key back: sc-cert rotate --promote-next --next-key
FILE. A key whose pin is not the one server.next.pub announces is refused
before anything is written.

PATH is a file, or a directory to put server.next.key in; an existing file
is only replaced with --force. The private key is written there (0600)
before the original is removed, so a crash never loses it.

` + residueWarning + `.`,
		Example: `  sc-cert export-next --to /media/offline/
  sc-cert export-next --dir certs --to /media/offline/game.next.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.pass.Prompt, o.pass.Context = cmd.ErrOrStderr(), cmd.Context()
			res, err := exportNext(cmd.Context(), o.nextKeyPath(), o.to, o.force, o.pass.Source("the next key"))
			if err != nil {
				return err
			}
			return printExportNext(cmd.OutOrStdout(), cmd.ErrOrStderr(), res, o.json)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.dir, "dir", pki.DefaultLayout("").Dir, "certificate `DIR` holding server.next.key")
	fs.StringVar(&o.nextKey, "next-key", "", "the next key `FILE` (default: server.next.key in --dir)")
	fs.StringVar(&o.to, "to", "", "where to move the private key: a `PATH` (file, or directory for server.next.key)")
	fs.BoolVar(&o.force, "force", false, "replace an existing file at --to")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	o.pass.AddFlags(fs)
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

func (o *exportNextOptions) nextKeyPath() string {
	if o.nextKey != "" {
		return o.nextKey
	}
	return filepath.Join(o.dir, pki.NextKeyFile)
}

// exportNext moves the next key at nextKey to to (a file, or a directory
// for a file of the same name) and writes its public half beside nextKey
// (server.next.pub): first the private key at its new place, then the
// public key, then the original is removed.
func exportNext(ctx context.Context, nextKey, to string, force bool, pass func() ([]byte, error)) (exportNextJSON, error) {
	if to == "" {
		return exportNextJSON{}, cli.Usagef("--to: name where the private key goes")
	}
	// A rotation running meanwhile (a promote-next reading the next key,
	// a renewal) must not see the key half moved: hold the directory's
	// change lock for the whole move.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	unlock, err := pki.LockDir(ctx, filepath.Dir(nextKey))
	if err != nil {
		return exportNextJSON{}, err
	}
	defer unlock()
	data, _, err := trustfile.Read(nextKey, trustfile.NextKey)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, perr := os.Stat(cli.NextPubPath(nextKey)); perr == nil {
				return exportNextJSON{}, fmt.Errorf("no next key at %q: it is already kept offline (%s holds its public half)", nextKey, cli.NextPubPath(nextKey))
			}
		}
		return exportNextJSON{}, fmt.Errorf("reading the next key %q: %w", nextKey, err)
	}
	k, err := pki.ParseKeyPEM(data, pki.KeyOptions{Passphrase: pass})
	if err != nil {
		return exportNextJSON{}, fmt.Errorf("reading the next key %q: %w", nextKey, err)
	}
	if fi, err := os.Stat(to); err == nil && fi.IsDir() {
		to = filepath.Join(to, filepath.Base(nextKey))
	}
	if same(to, nextKey) {
		return exportNextJSON{}, cli.Usagef("--to %s is the next key itself: name a place off the server", to)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(k.Signer.Public())
	if err != nil {
		return exportNextJSON{}, err
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	res := exportNextJSON{NextKey: nextKey, Public: cli.NextPubPath(nextKey), MovedTo: to, Pin: pinning.PinOfSPKI(pubDER).String(), Warning: residueWarning}
	if err := atomicfile.WriteFile(to, data, atomicfile.Options{Perm: 0o600, Overwrite: force}); err != nil {
		return exportNextJSON{}, cli.WithHint(fmt.Errorf("writing the next key to %q: %w", to, err), "give --force to replace it, or another --to")
	}
	if err := atomicfile.WriteFile(res.Public, pubPEM, atomicfile.Options{Perm: 0o644, Overwrite: true}); err != nil {
		return exportNextJSON{}, fmt.Errorf("writing the public next key %q (the private key is already at %s, and still at %s): %w", res.Public, to, nextKey, err)
	}
	if err := os.Remove(nextKey); err != nil {
		return exportNextJSON{}, fmt.Errorf("removing %q (the private key is now also at %s): %w", nextKey, to, err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(nextKey)); err != nil {
		return exportNextJSON{}, err
	}
	return res, nil
}

func printExportNext(stdout, stderr io.Writer, res exportNextJSON, asJSON bool) error {
	fmt.Fprintf(stderr, "sc-cert: warning: %s removed: %s\n", res.NextKey, residueWarning)
	if asJSON {
		return cli.PrintJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "Moved the next key to %s and removed %s\n", res.MovedTo, res.NextKey)
	fmt.Fprintf(stdout, "Wrote its public half to %s: sc-server announces %s\n", res.Public, res.Pin)
	fmt.Fprintf(stdout, "At the rollover, bring it back: sc-cert rotate --promote-next --next-key %s\n", res.MovedTo)
	return nil
}

// same reports whether two paths name the same file.
func same(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// announcedNextPin returns the pin server.next.pub beside keyPath's next
// key announces, and whether there is one.
func announcedNextPin(keyPath string) (pinning.Pin, string, bool, error) {
	pub := cli.NextPubPath(pki.NextKeyPath(keyPath))
	data, _, err := trustfile.Read(pub, trustfile.PublicNextKey)
	if errors.Is(err, fs.ErrNotExist) {
		return pinning.Pin{}, pub, false, nil
	}
	if err != nil {
		return pinning.Pin{}, pub, false, fmt.Errorf("reading the public next key %q: %w", pub, err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return pinning.Pin{}, pub, false, fmt.Errorf("reading the public next key %q: want one PUBLIC KEY PEM block", pub)
	}
	if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
		return pinning.Pin{}, pub, false, fmt.Errorf("reading the public next key %q: %w", pub, err)
	}
	return pinning.PinOfSPKI(block.Bytes), pub, true, nil
}

// checkBroughtBack refuses a key brought back for a promotion whose pin is
// not the announced one, before anything is written.
func checkBroughtBack(file string, want pinning.Pin, pubPath string, pass func() ([]byte, error)) error {
	k, err := pki.ReadKeyFile(file, pki.KeyOptions{Passphrase: pass, RequirePrivateFile: true})
	if err != nil {
		return fmt.Errorf("reading the next key brought back, %q: %w", file, err)
	}
	got, err := pinning.PinOfPublicKey(k.Signer.Public())
	if err != nil {
		return err
	}
	if !got.Equal(want) {
		return cli.WithHint(fmt.Errorf("refusing to promote %s: its pin is %v, but %s announces %v; clients that learned the announced key would refuse this one; nothing was written", file, got, pubPath, want),
			"bring back the key that was exported with sc-cert export-next (its pin is printed there and in sc-cert pin show --next)")
	}
	return nil
}

// writePublicKey writes pub as a PEM public key at path (0644, atomic).
func writePublicKey(path string, pub crypto.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), atomicfile.Options{Perm: 0o644, Overwrite: true})
}

// appendRevoked adds pin to the revoked-keys file beside certPath (made if
// missing), atomically; a pin already there is left alone. It returns the
// file's path and whether it changed.
func appendRevoked(certPath string, old *x509.Certificate) (string, bool, error) {
	pin := pinning.PinOf(old)
	path := filepath.Join(filepath.Dir(certPath), cli.RevokedKeysFile)
	data, _, err := trustfile.Read(path, trustfile.RevokedKeys)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return path, false, fmt.Errorf("reading the revoked keys file %q: %w", path, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if p, err := pinning.ParsePin(strings.TrimSpace(line)); err == nil && p.Equal(pin) {
			return path, false, nil
		}
	}
	var b bytes.Buffer
	if len(data) == 0 {
		b.WriteString("# Revoked server keys: sc-server announces them in KEYS (revoked lines), and\n# trust-on-first-use clients that see them stop trusting those keys.\n")
	} else {
		b.Write(data)
		if !bytes.HasSuffix(data, []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	b.WriteString(pin.String() + "\n")
	if err := atomicfile.WriteFile(path, b.Bytes(), atomicfile.Options{Perm: 0o644, Overwrite: true}); err != nil {
		return path, false, fmt.Errorf("writing the revoked keys file %q: %w", path, err)
	}
	return path, true, nil
}
