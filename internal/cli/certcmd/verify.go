package certcmd

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/cobra"
)

type verifyOptions struct {
	certPath, keyPath string
	pins              []string
	caPath            string
	dnsName           string
	checkExpiry       time.Duration
	json              bool
	pass              *cli.Passphrase
	tokenPIN          *cli.TokenPIN
}

func newVerifyCmd(env *Env) *cobra.Command {
	o := &verifyOptions{pass: env.passphrase(), tokenPIN: env.tokenPIN()}
	cmd := &cobra.Command{
		Use:   "verify CERT|--cert CERT [--key FILE] [--pin PIN]... [--ca FILE] [--check-expiry DURATION]",
		Short: "Check a certificate: its key, its validity, pins and chain",
		Long: `verify runs every check that applies and prints one line per check, then
exits with the code of the first that failed:

  key      --key belongs to the certificate                  exit 3
  valid    the certificate is valid now                      exit 4
  expiry   it stays valid for at least --check-expiry        exit 5
  pin      its key matches one of the --pin values           exit 6
  chain    it verifies against --ca for server auth (and     exit 7
           for --dns NAME when given)

The certificate is the argument, or --cert. Any other error exits 1: an
unreadable file, a wrong passphrase, a key the server would refuse to
serve (one others may read, or that another user could have planted: the
same rule as sc-server), or a rotation a crash interrupted in the
certificate's directory (the files may be half old, half new; the error
names the command that completes it). Pins are in the sha256//BASE64 form
or 64 hex digits, as sc-cert fingerprint prints them with --format pin or
pin-hex; any one matching is a match (the current pin plus backups). A
certificate's fingerprint (--format cert-sha256) is not a pin, and verify
says so when it is given as one. Without --key the key check is skipped.

--key may name a key in a PKCS#11 token (a pkcs11: URI, or a .uri file
holding one): the key check then has the token sign a random challenge and
verifies the signature with the certificate's public key, which proves the
token holds the certificate's key. The PIN comes from pin-source=FILE in
the URI, else --token-pin-file FILE, else $SC_TOKEN_PIN.`,
		Example: `  sc-cert verify certs/server.crt --key certs/server.key
  sc-cert verify --cert certs/server.crt --ca certs/ca.crt --dns localhost
  sc-cert verify --cert certs/server.crt --check-expiry 30d || sc-cert rotate
  sc-cert verify --cert certs/server.crt --pin sha256//AAAA... --pin sha256//BBBB... --json
  sc-cert verify certs/server.crt --key certs/server.uri       # the key in the token signs a challenge`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.pass.Prompt, o.pass.Context = cmd.ErrOrStderr(), cmd.Context()
			if len(args) == 1 {
				if o.certPath != "" && o.certPath != args[0] {
					return cli.Usagef("the certificate is given twice: %s and --cert %s", args[0], o.certPath)
				}
				o.certPath = args[0]
			}
			if o.certPath == "" {
				return cli.WithHint(cli.Usagef("verify: which certificate? give it as the argument or with --cert"), "run 'sc-cert verify --help' for usage")
			}
			return runVerify(cmd.OutOrStdout(), cmd.ErrOrStderr(), env, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.certPath, "cert", "", "certificate (chain) `FILE` to check (or give it as the argument)")
	fs.StringVar(&o.keyPath, "key", "", "private key `FILE` that should belong to the certificate"+cli.KeyRefHelp()+" (it signs a challenge)")
	fs.StringArrayVar(&o.pins, "pin", nil, "accepted `PIN` of the certificate's key, sha256//BASE64 or hex (can be repeated; any match passes)")
	fs.StringVar(&o.caPath, "ca", "", "CA certificate(s) `FILE` the certificate must verify against")
	fs.StringVar(&o.dnsName, "dns", "", "host `NAME` or IP the certificate must be valid for (with --ca)")
	cli.PositiveDurationVar(fs, &o.checkExpiry, "check-expiry", 0, "fail (exit 5) if the certificate expires within `DURATION`, e.g. 30d")
	o.pass.AddFlags(fs)
	o.tokenPIN.AddFlags(fs)
	fs.BoolVar(&o.json, "json", false, "print the results as JSON")
	return cmd
}

type checkJSON struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	code   int
}

type verifyJSON struct {
	Cert     string      `json:"cert"`
	OK       bool        `json:"ok"`
	ExitCode int         `json:"exit_code"`
	Checks   []checkJSON `json:"checks"`
}

func runVerify(stdout, stderr io.Writer, env *Env, o *verifyOptions) error {
	if o.dnsName != "" && o.caPath == "" {
		return cli.Usagef("--dns needs --ca: the name is checked as part of the chain")
	}
	var pins []pinning.Pin
	for _, s := range o.pins {
		p, err := pinning.ParsePin(s)
		if err != nil {
			return cli.WithCode(cli.ExitUsage, fmt.Errorf("--pin: %w", err))
		}
		pins = append(pins, p)
	}
	// A rotation a crash interrupted leaves a mismatched pair until it is
	// completed: say that, not "the key belongs to another certificate".
	dir := filepath.Dir(o.certPath)
	if pending, err := pki.Pending(dir); err != nil {
		return err
	} else if pending {
		keyFlag := ""
		if o.keyPath != "" {
			keyFlag = " --key " + o.keyPath
		}
		return cli.WithHint(fmt.Errorf("an interrupted rotation is pending in %s: the files may be half old, half new", dir),
			"complete it, then verify again: sc-cert rotate --recover --cert "+o.certPath+keyFlag+" (sc-server completes it too, at start)")
	}
	chain, err := pki.ReadCertificatesFile(o.certPath)
	if err != nil {
		return err
	}
	leaf := chain[0]
	now := env.now()
	var checks []checkJSON
	add := func(name string, err error, code int, okDetail string) {
		c := checkJSON{Name: name, OK: err == nil, Detail: okDetail, code: code}
		if err != nil {
			c.Detail = err.Error()
		}
		checks = append(checks, c)
	}

	if o.keyPath != "" {
		tokens := openTokens(stderr, o.tokenPIN, "--key", o.keyPath)
		defer tokens.Close()
		// The rule sc-server serves by: a key it would refuse fails here.
		key, err := pki.ReadKeyFile(o.keyPath, pki.KeyOptions{Passphrase: o.pass.Source(o.keyPath), RequirePrivateFile: true, Tokens: tokens})
		if err != nil {
			return cli.TokenHint(keyHint(err, o.certPath, o.keyPath))
		}
		name, detail := display(o.keyPath), " belongs to the certificate"
		err = pki.CheckPair(leaf, key.Signer)
		if err == nil && key.URI != "" {
			// The public key a token reports is an object of its own: a
			// signature proves the private key is the certificate's.
			detail = " belongs to the certificate (the token signed a challenge that verifies with it)"
			if err = pki.ProveKey(leaf, key.Signer); err != nil && !errors.Is(err, pki.ErrKeyMismatch) {
				return cli.TokenHint(fmt.Errorf("verifying %s with %s: %w", o.certPath, name, err))
			}
		}
		if err != nil {
			err = fmt.Errorf("%s does not match %s: %w", name, o.certPath, err)
		}
		add("key", err, ExitKeyMismatch, name+detail)
	}

	validity := pki.CheckValidity(leaf, now, 0)
	add("valid", validity, ExitExpired, fmt.Sprintf("valid until %s, %s left", leaf.NotAfter.UTC().Format(time.RFC3339), formatDuration(leaf.NotAfter.Sub(now))))

	if o.checkExpiry > 0 {
		var err error
		if validity == nil {
			err = pki.CheckValidity(leaf, now, o.checkExpiry)
		} else {
			err = errors.New("not valid now")
		}
		add("expiry", err, ExitExpiresSoon, "more than "+formatDuration(o.checkExpiry)+" left")
	}

	if len(pins) > 0 {
		got := pinning.PinOf(leaf)
		var err error
		matched := false
		for _, p := range pins {
			matched = matched || p.Equal(got)
		}
		if !matched {
			err = fmt.Errorf("the certificate's key is %s, which is none of the %d pin(s) given", got, len(pins))
			for _, p := range pins {
				if p.IsFingerprintOf(leaf) {
					err = fmt.Errorf("a --pin given is this certificate's fingerprint, not a key pin; use %s (sc-cert fingerprint --format pin, or pin-hex for hex)", got)
				}
			}
		}
		add("pin", err, ExitPinMismatch, "key pin "+got.String()+" matches")
	}

	if o.caPath != "" {
		roots, err := pki.ReadCertificatesFile(o.caPath)
		if err != nil {
			return err
		}
		pool, inter := x509.NewCertPool(), x509.NewCertPool()
		for _, r := range roots {
			pool.AddCert(r)
		}
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: o.dnsName,
			CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			err = fmt.Errorf("does not verify against %s: %w", o.caPath, err)
		}
		detail := "verifies against " + o.caPath
		if o.dnsName != "" {
			detail += " for " + o.dnsName
		}
		add("chain", err, ExitChainInvalid, detail)
	}

	out := verifyJSON{Cert: o.certPath, OK: true, Checks: checks}
	var first *checkJSON
	for i := range checks {
		if !checks[i].OK && first == nil {
			first = &checks[i]
			out.OK = false
			out.ExitCode = checks[i].code
		}
	}
	if o.json {
		if err := cli.PrintJSON(stdout, out); err != nil {
			return err
		}
	} else {
		for _, c := range checks {
			status := "ok  "
			if !c.OK {
				status = "FAIL"
			}
			fmt.Fprintf(stdout, "%s %-7s %s\n", status, c.Name, c.Detail)
		}
	}
	if first == nil {
		return nil
	}
	var failed []string
	for _, c := range checks {
		if !c.OK {
			failed = append(failed, c.Name)
		}
	}
	return cli.WithCode(first.code, fmt.Errorf("%s: %s check failed", o.certPath, strings.Join(failed, ", ")), verifyHint(first.Name, o))
}

func verifyHint(check string, o *verifyOptions) string {
	switch check {
	case "key":
		return "is it the key of another certificate (server.next.key?), or are --cert and --key from different runs?"
	case "valid", "expiry":
		key := o.keyPath
		if key == "" {
			key = pki.SiblingKeyPath(o.certPath)
		}
		return fmt.Sprintf("renew it on the same key with: sc-cert rotate --cert %s --key %s", o.certPath, key)
	case "pin":
		return "clients pinning the old key must be given the new pin; sc-cert fingerprint prints it"
	case "chain":
		return "a self-signed layout's ca.crt must be recopied after every re-issue"
	}
	return ""
}
