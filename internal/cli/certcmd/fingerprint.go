package certcmd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/cobra"
)

type fingerprintOptions struct {
	format     string
	serverName string
	timeout    time.Duration
	udp        bool
	json       bool
	pass       *cli.Passphrase
	tokenPIN   *cli.TokenPIN
}

// fingerprintFormats are the --format values, each named for what it is
// a digest of: the key (pin, pin-hex, base64) or the certificate.
var fingerprintFormats = []string{"pin", "pin-hex", "base64", "cert-sha256"}

func newFingerprintCmd(env *Env) *cobra.Command {
	o := &fingerprintOptions{pass: env.passphrase(), tokenPIN: env.tokenPIN()}
	cmd := &cobra.Command{
		Use:   "fingerprint FILE|HOST:PORT",
		Short: "Print the pin or fingerprint of a certificate, key or server",
		Long: `fingerprint prints one line for the first certificate of FILE (the leaf of a
chain), for a private key, or for the certificate a server presents at
HOST:PORT (read as HOST:PORT when no file of that name exists). A key in a
PKCS#11 token is given as its pkcs11: URI, or a .uri file holding one.

A server's pin is fetched without checking who the server is: it is NOT
VERIFIED (the output says so, on standard error, and in --json as
"verified": false), so compare it out of band before trusting it. A server
that cannot prove it holds the key of the certificate it presents (its
handshake signature fails) is an error, not a pin.

Formats:
  pin          sha256//BASE64 of the SHA-256 of the key's SubjectPublicKeyInfo:
               the pin curl --pinnedpubkey, HPKP and sc-client take (the
               default). Pins name keys, so they survive re-issues on the
               same key.
  pin-hex      the same key digest as 64 hex digits, which --pin also takes.
  base64       the same key digest, bare standard base64 (HPKP's pin-sha256).
  cert-sha256  the certificate's SHA-256 fingerprint in colon hex, exactly as
               openssl x509 -noout -fingerprint -sha256 prints it. It names
               one certificate and changes at every re-issue; it is NOT a
               pin, and a key has none. (hex is an old name for it.)`,
		Example: `  sc-cert fingerprint certs/server.crt
  sc-cert fingerprint --format pin-hex certs/server.crt
  sc-cert fingerprint --format cert-sha256 certs/server.crt
  sc-cert fingerprint certs/server.next.key      # the pin to hand out ahead of a rollover
  sc-cert fingerprint localhost:4242 --json`,
		Args: cli.ExactArgs(1, "one FILE or HOST:PORT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.pass.Prompt, o.pass.Context = cmd.ErrOrStderr(), cmd.Context()
			return runFingerprint(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.format, "format", "pin", "output `FORMAT`: "+strings.Join(fingerprintFormats, ", "))
	fs.StringVar(&o.serverName, "server-name", "", "TLS server `NAME` (SNI) to ask for (default: the host of HOST:PORT)")
	cli.PositiveDurationVar(fs, &o.timeout, "timeout", 10*time.Second, "how long to wait for a server to connect and handshake")
	addUDPFlag(fs, &o.udp)
	o.pass.AddFlags(fs)
	o.tokenPIN.AddFlags(fs)
	fs.BoolVar(&o.json, "json", false, "print all formats as JSON")
	cli.CompleteValues(cmd, "format", fingerprintFormats...)
	return cmd
}

type fingerprintJSON struct {
	Source     string `json:"source"`
	Pin        string `json:"pin"`
	PinHex     string `json:"pin_hex"`
	Base64     string `json:"base64"`
	CertSHA256 string `json:"cert_sha256,omitempty"`
	// Hex is CertSHA256 under its old name, kept for scripts.
	Hex string `json:"hex,omitempty"`
	// Verified is set for a server: false, since nothing checked who it
	// is.
	Verified *bool `json:"verified,omitempty"`
}

func runFingerprint(ctx context.Context, stdout, stderr io.Writer, arg string, o *fingerprintOptions) error {
	format := strings.ToLower(o.format)
	switch format {
	case "pin", "pin-hex", "base64", "cert-sha256":
	case "hex":
		fmt.Fprintln(stderr, "sc-cert: note: --format hex is the certificate's fingerprint, not a pin; call it cert-sha256 (or use pin-hex for the key's digest in hex)")
		format = "cert-sha256"
	default:
		return cli.Usagef("--format %q: want %s", o.format, strings.Join(fingerprintFormats, ", "))
	}
	tokens := openTokens(stderr, o.tokenPIN, "the argument", arg)
	defer tokens.Close()
	src, err := loadTarget(ctx, arg, targetOptions{serverName: o.serverName, timeout: o.timeout, pass: o.pass, udp: o.udp, tokens: tokens})
	if err != nil {
		return err
	}
	if src.handshakeErr != nil {
		return cli.WithHint(fmt.Errorf("%s presented a certificate but did not complete the handshake, so it has not proved it holds that key; no pin printed: %w", arg, src.handshakeErr),
			"a server whose handshake signature fails may be an impostor replaying another server's certificate; sc-cert inspect "+arg+" shows what it presented")
	}
	var out fingerprintJSON
	out.Source = src.name
	var pin pinning.Pin
	if src.key != nil {
		if pin, err = pinning.PinOfPublicKey(src.key.Signer.Public()); err != nil {
			return err
		}
	} else {
		pin = pinning.PinOf(src.certs[0])
		out.CertSHA256 = pki.Fingerprint(src.certs[0])
		out.Hex = out.CertSHA256
	}
	out.Pin, out.Base64 = pin.String(), pin.Base64()
	out.PinHex = pin.Hex()
	if src.state != nil {
		f := false
		out.Verified = &f
		fmt.Fprintf(stderr, "sc-cert: note: NOT VERIFIED: the key %s presented, fetched without checking who the server is; compare the pin out of band before trusting it\n", arg)
	}
	if o.json {
		return cli.PrintJSON(stdout, out)
	}
	switch format {
	case "pin":
		fmt.Fprintln(stdout, out.Pin)
	case "pin-hex":
		fmt.Fprintln(stdout, out.PinHex)
	case "base64":
		fmt.Fprintln(stdout, out.Base64)
	case "cert-sha256":
		if out.CertSHA256 == "" {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("%s is a private key: it has no certificate fingerprint", src.name),
				"use --format pin, pin-hex or base64 for a key, or give its certificate")
		}
		fmt.Fprintln(stdout, out.CertSHA256)
	}
	return nil
}
