package certcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/cobra"
)

type rotateOptions struct {
	certPath, keyPath, nextKeyPath string
	issuerCert, issuerKey          string
	validity                       validityFlags
	promoteNext                    bool
	revokeOld                      bool
	recover                        bool
	timeout                        time.Duration
	json                           bool
	pass, issuerPass               *cli.Passphrase
	tokenPIN                       *cli.TokenPIN
}

func newRotateCmd(env *Env) *cobra.Command {
	o := &rotateOptions{pass: env.passphrase(), issuerPass: env.passphrase(), tokenPIN: env.tokenPIN()}
	cmd := &cobra.Command{
		Use:   "rotate [--cert FILE] [--key FILE] [--validity DURATION | --not-after TIME] [--promote-next]",
		Short: "Re-issue a certificate in place, on the same key or the pre-made next key",
		Long: `rotate re-issues the certificate in place with a new serial, keeping its
subject and names, for the same lifetime as before unless --validity or
--not-after say otherwise.

Who signs: a CA-issued certificate is re-issued by its CA — ca.crt and
ca.key beside it by default, or the CA named by --issuer-cert and
--issuer-key (say, kept offline). A self-signed certificate is re-signed by
its own key, and a ca.crt beside it that is its copy is rewritten; CA-file
clients then need the new copy.

By default the key is kept, so every client's pin stays valid. With
--promote-next the pre-made next key (server.next.key) becomes the server key
and a fresh next key of the same type is made: clients that were given the
next pin ahead of time keep working. With --revoke-old the key replaced is
also added to revoked.pins beside the certificate, which sc-server
announces in KEYS, so that trust-on-first-use clients stop trusting it (an
emergency rollover after a key leaked; see docs/ROTATION.md).

When the next key is kept offline (server.next.pub beside the key, made by
sc-cert export-next), --promote-next needs the private key brought back:
--next-key FILE. A key whose pin is not the one server.next.pub announces is
refused before anything is written. The fresh next key is then written to
FILE (off the server again) and its public half to server.next.pub.

All files change together or not at all, even if the machine crashes
halfway, and concurrent rotations of one directory (several servers sharing
it) take turns through a lock file there. A rotation interrupted by a crash
is completed (or undone) by the next command that takes that lock, by
sc-server at start, or by --recover alone.

The key defaults to the certificate's name with .key: certs/server.key for
certs/server.crt, game.key for game.crt (or .uri, when only that exists).

Keys may be in a PKCS#11 token (sc-cert init --kms): --key, --next-key and
--issuer-key then take a pkcs11: URI or a .uri file naming one, and the
.uri files beside the certificate are found by default. The CA key in the
token signs the new certificate; with --promote-next, server.next.uri
becomes server.uri and a fresh next key is made in the same token, labelled
sc-server-next-2 (then -3, ...) with a random id. The old key stays in the
token until you delete it. The PIN comes from pin-source=FILE in the URI,
else --token-pin-file FILE, else $SC_TOKEN_PIN.`,
		Example: `  sc-cert rotate
  sc-cert rotate --cert certs/server.crt --key certs/server.key --validity 30d
  sc-cert rotate --promote-next
  sc-cert rotate --promote-next --revoke-old        # server.key leaked
  sc-cert rotate --promote-next --next-key /media/offline/server.next.key
  sc-cert rotate --issuer-cert /mnt/offline/ca.crt --issuer-key /mnt/offline/ca.key --json
  sc-cert rotate --recover --cert certs/server.crt --key certs/server.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.pass.Prompt, o.issuerPass.Prompt = cmd.ErrOrStderr(), cmd.ErrOrStderr()
			o.pass.Context, o.issuerPass.Context = cmd.Context(), cmd.Context()
			return runRotate(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), env, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.certPath, "cert", pki.DefaultLayout("").ServerCert, "certificate `FILE` to re-issue")
	fs.StringVar(&o.keyPath, "key", "", "its key `FILE` (default: --cert's name with .key, e.g. certs/server.key, or .uri when only that exists)"+cli.KeyRefHelp())
	fs.StringVar(&o.nextKeyPath, "next-key", "", "the next key `FILE` (default: --key with .next before its extension, e.g. server.next.key); when the next key is kept offline, the private key brought back"+cli.KeyRefHelp())
	fs.StringVar(&o.issuerCert, "issuer-cert", "", "CA certificate `FILE` that signs (default: ca.crt beside --cert when CA-issued)")
	fs.StringVar(&o.issuerKey, "issuer-key", "", "key `FILE` of that CA (default: ca.key, or ca.uri, beside --issuer-cert)"+cli.KeyRefHelp())
	o.validity.add(fs, "the current certificate's lifetime")
	fs.BoolVar(&o.promoteNext, "promote-next", false, "make the next key current and make a fresh next key")
	fs.BoolVar(&o.revokeOld, "revoke-old", false, "with --promote-next: add the key replaced to revoked.pins beside --cert, which sc-server announces so that clients stop trusting it (a leaked key)")
	fs.BoolVar(&o.recover, "recover", false, "only complete (or undo) a rotation a crash interrupted in --cert's directory, and exit")
	cli.PositiveDurationVar(fs, &o.timeout, "lock-timeout", 30*time.Second, "how long to wait for another rotation of the same directory")
	o.pass.AddFlags(fs)
	fs.StringVar(&o.issuerPass.File, "issuer-password-file", "", "read the CA key's passphrase from `FILE` (else $SC_KEY_PASSWORD, else a prompt)")
	o.tokenPIN.AddFlags(fs)
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	cmd.MarkFlagsMutuallyExclusive("validity", "not-after")
	return cmd
}

// runRecover is rotate --recover: it completes or undoes an interrupted
// rotation in the certificate's directory, and says which.
func runRecover(ctx context.Context, stdout io.Writer, o *rotateOptions) error {
	dir := filepath.Dir(o.certPath)
	pending, err := pki.Pending(dir)
	if err != nil {
		return err
	}
	if !pending {
		fmt.Fprintf(stdout, "Nothing to recover in %s: no rotation was interrupted there\n", dir)
		return nil
	}
	if err := pki.Recover(ctx, dir); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Recovered %s: the interrupted rotation is completed (or undone, if it had not reached its commit); every file is from one set\n", dir)
	return nil
}

// rotateHint adds to a failed rotation what to do about it, in flags:
// the library's errors say what is wrong and which files, never how to
// call this command.
func rotateHint(err error, o *rotateOptions) error {
	var (
		ie *pki.IssuerError
		pe *fs.PathError
	)
	switch {
	case errors.As(err, &ie) && errors.Is(err, pki.ErrNotIssuer):
		return cli.WithHint(err, "name the CA that issued it: --issuer-cert FILE --issuer-key FILE")
	case errors.As(err, &ie) && ie.Missing == ie.IssuerKeyPath:
		return cli.WithHint(err, fmt.Sprintf("a CA key kept offline is named when renewing: sc-cert rotate --cert %s --issuer-cert %s --issuer-key FILE", o.certPath, ie.IssuerCertPath))
	case errors.As(err, &ie):
		return cli.WithHint(err, "name its CA: --issuer-cert FILE --issuer-key FILE")
	case errors.Is(err, context.DeadlineExceeded):
		return cli.WithHint(err, "another rotation holds the lock; wait for it or raise --lock-timeout")
	case errors.Is(err, pki.ErrIncomplete):
		return cli.WithHint(err, fmt.Sprintf("complete it once the cause is fixed: sc-cert rotate --recover --cert %s (sc-server and any later rotation complete it too)", o.certPath))
	case errors.As(err, &pe) && errors.Is(err, fs.ErrNotExist) && (pe.Path == o.certPath || pe.Path == o.keyPath):
		return cli.WithHint(err, fmt.Sprintf("run sc-cert init (for the default layout), or pass the certificate and its key: sc-cert rotate --cert FILE --key FILE (here --cert %s --key %s)", o.certPath, display(o.keyPath)))
	case errors.Is(err, pki.ErrKeyURI) && o.promoteNext:
		return cli.WithHint(err, "promote through the .uri files sc-cert init --kms makes: --key certs/server.uri --next-key certs/server.next.uri")
	}
	return cli.TokenHint(keyHint(err, o.certPath, o.keyPath))
}

type rotateJSON struct {
	Cert        string    `json:"cert"`
	OldSerial   string    `json:"old_serial"`
	NewSerial   string    `json:"new_serial"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	SignedBy    string    `json:"signed_by"` // "self" or the issuer's subject
	Promoted    bool      `json:"promoted"`
	OldPin      string    `json:"old_pin"`
	Pin         string    `json:"pin"`
	NextPin     string    `json:"next_pin,omitempty"`
	CACopy      string    `json:"ca_copy,omitempty"`
	Written     []string  `json:"written"`
	Fingerprint string    `json:"sha256_fingerprint"`
	RevokedFile string    `json:"revoked_file,omitempty"` // --revoke-old
}

func runRotate(ctx context.Context, stdout, stderr io.Writer, env *Env, o *rotateOptions) error {
	if o.issuerKey != "" && o.issuerCert == "" {
		return cli.Usagef("--issuer-key needs --issuer-cert")
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if o.keyPath == "" {
		o.keyPath = pki.ResolveKeyPath(pki.SiblingKeyPath(o.certPath))
	}
	if o.recover {
		return runRecover(ctx, stdout, o)
	}
	tokens := openTokens(stderr, o.tokenPIN, "--key", o.keyPath, "--next-key", o.nextKeyPath, "--issuer-key", o.issuerKey)
	defer tokens.Close()
	if o.revokeOld && !o.promoteNext {
		return cli.Usagef("--revoke-old needs --promote-next: only a rollover replaces the key")
	}
	keyPass := o.pass.Source("the server key")
	// A next key kept offline: the key brought back must be the one
	// announced, checked before anything is written.
	var offlinePub string
	if o.promoteNext {
		want, pubPath, offline, err := announcedNextPin(o.keyPath)
		if err != nil {
			return err
		}
		if offline {
			if o.nextKeyPath == "" {
				return cli.WithHint(fmt.Errorf("the next key is kept offline (%s holds its public half, pin %v): bring the private key back with --next-key FILE", pubPath, want),
					"sc-cert rotate --promote-next --next-key /path/to/server.next.key")
			}
			if err := checkBroughtBack(o.nextKeyPath, want, pubPath, keyPass); err != nil {
				return err
			}
			offlinePub = pubPath
		}
	}
	res, err := pki.Rotate(ctx, pki.RotateOptions{
		CertPath:            o.certPath,
		KeyPath:             o.keyPath,
		NextKeyPath:         o.nextKeyPath,
		IssuerCertPath:      o.issuerCert,
		IssuerKeyPath:       o.issuerKey,
		Validity:            o.validity.validity,
		NotAfter:            o.validity.notAfter,
		PromoteNext:         o.promoteNext,
		KeyPassphrase:       keyPass,
		IssuerKeyPassphrase: o.issuerPass.Source("the CA key"),
		Tokens:              tokens,
		Now:                 env.Now,
	})
	if err != nil {
		return rotateHint(err, o)
	}
	out := rotateJSON{
		Cert:        o.certPath,
		OldSerial:   pki.SerialHex(res.Old.SerialNumber),
		NewSerial:   pki.SerialHex(res.New.SerialNumber),
		NotBefore:   res.New.NotBefore,
		NotAfter:    res.New.NotAfter,
		SignedBy:    "self",
		Promoted:    res.Promoted,
		OldPin:      pinOfCert(res.Old),
		Pin:         pinOfCert(res.New),
		CACopy:      res.CACopy,
		Written:     res.Written,
		Fingerprint: pki.Fingerprint(res.New),
	}
	if res.Issuer != nil {
		out.SignedBy = res.Issuer.Subject.String()
	}
	if res.NextKey != nil {
		out.NextPin = pinOfKey(res.NextKey)
	}
	if offlinePub != "" && res.Promoted {
		if err := writePublicKey(offlinePub, res.NextKey); err != nil {
			return fmt.Errorf("the rotation is done, but the public half of the new next key could not be written, so the server announces no next key: %w (write it yourself: openssl pkey -in %s -pubout -out %s)", err, o.nextKeyPath, offlinePub)
		}
		out.Written = append(out.Written, offlinePub)
	}
	if o.revokeOld && res.Promoted {
		// After the rotation, so that the server never sees the key it
		// still serves listed as revoked (it would say so, loudly).
		path, _, err := appendRevoked(o.certPath, res.Old)
		if err != nil {
			return fmt.Errorf("the rotation is done, but the old key %s could not be revoked: %w (add that pin as a line of %s yourself)", out.OldPin, err, filepath.Join(filepath.Dir(o.certPath), cli.RevokedKeysFile))
		}
		out.RevokedFile = path
	}
	if res.CACopy != "" {
		fmt.Fprintf(stderr, "sc-cert: warning: %s was rewritten as the copy of the new self-signed certificate: CA-file clients need this new copy\n", res.CACopy)
	}
	if o.json {
		return cli.PrintJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "Re-issued %s, valid until %s (serial %s)\n", o.certPath, res.New.NotAfter.Format(time.RFC3339), out.NewSerial)
	if res.Issuer != nil {
		fmt.Fprintf(stdout, "Signed by %s\n", out.SignedBy)
	} else {
		fmt.Fprintf(stdout, "Self-signed\n")
	}
	if res.Promoted {
		fmt.Fprintf(stdout, "Promoted the next key: the pin changed from %s\n  to %s\n", out.OldPin, out.Pin)
		fmt.Fprintf(stdout, "New next key pin: %s (hand it to pin clients ahead of the next rollover)\n", out.NextPin)
		if offlinePub != "" {
			fmt.Fprintf(stdout, "The new next key is at %s, off the server again; its public half is in %s\n", o.nextKeyPath, offlinePub)
		}
		if out.RevokedFile != "" {
			fmt.Fprintf(stdout, "Revoked the old key %s in %s: sc-server announces it, and clients that see it stop trusting that key\n", out.OldPin, out.RevokedFile)
		}
	} else {
		fmt.Fprintf(stdout, "Key kept: the pin is unchanged, %s\n", out.Pin)
	}
	return nil
}
