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
}

func newFingerprintCmd(env *Env) *cobra.Command {
	o := &fingerprintOptions{pass: env.passphrase()}
	cmd := &cobra.Command{
		Use:   "fingerprint FILE|HOST:PORT",
		Short: "Print the pin or fingerprint of a certificate, key or server",
		Long: `fingerprint prints one line for the first certificate of FILE (the leaf of a
chain), for a private key, or for the certificate a server presents at
HOST:PORT (read as HOST:PORT when no file of that name exists; fetched
without verification).

Formats:
  pin     sha256//BASE64 of the SHA-256 of the key's SubjectPublicKeyInfo: the
          pin curl --pinnedpubkey, HPKP and sc-client take (the default).
          Pins name keys, so they survive re-issues on the same key.
  base64  the same digest, bare standard base64 (HPKP's pin-sha256 value).
  hex     the certificate's SHA-256 fingerprint in colon hex, exactly as
          openssl x509 -noout -fingerprint -sha256 prints it. It names one
          certificate and changes at every re-issue; a key has none.`,
		Example: `  sc-cert fingerprint certs/server.crt
  sc-cert fingerprint --format hex certs/server.crt
  sc-cert fingerprint certs/server.next.key      # the pin to hand out ahead of a rollover
  sc-cert fingerprint localhost:4242 --json`,
		Args: cli.ExactArgs(1, "one FILE or HOST:PORT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.pass.Prompt = cmd.ErrOrStderr()
			return runFingerprint(cmd.Context(), cmd.OutOrStdout(), args[0], o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.format, "format", "pin", "output `FORMAT`: pin, base64 or hex")
	fs.StringVar(&o.serverName, "server-name", "", "TLS server `NAME` (SNI) to ask for (default: the host of HOST:PORT)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for a server to connect and handshake")
	addUDPFlag(fs, &o.udp)
	o.pass.AddFlags(fs)
	fs.BoolVar(&o.json, "json", false, "print all formats as JSON")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"pin", "base64", "hex"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

type fingerprintJSON struct {
	Source string `json:"source"`
	Pin    string `json:"pin"`
	Base64 string `json:"base64"`
	Hex    string `json:"hex,omitempty"`
}

func runFingerprint(ctx context.Context, stdout io.Writer, arg string, o *fingerprintOptions) error {
	format := strings.ToLower(o.format)
	switch format {
	case "pin", "base64", "hex":
	default:
		return cli.Usagef("--format %q: want pin, base64 or hex", o.format)
	}
	src, err := loadSource(ctx, arg, sourceOptions{serverName: o.serverName, timeout: o.timeout, pass: o.pass, udp: o.udp})
	if err != nil {
		return err
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
		out.Hex = pki.Fingerprint(src.certs[0])
	}
	out.Pin, out.Base64 = pin.String(), pin.Base64()
	if o.json {
		return cli.PrintJSON(stdout, out)
	}
	switch format {
	case "pin":
		fmt.Fprintln(stdout, out.Pin)
	case "base64":
		fmt.Fprintln(stdout, out.Base64)
	case "hex":
		if out.Hex == "" {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("%s is a private key: it has no certificate fingerprint", arg),
				"use --format pin or base64 for a key, or give its certificate")
		}
		fmt.Fprintln(stdout, out.Hex)
	}
	return nil
}
