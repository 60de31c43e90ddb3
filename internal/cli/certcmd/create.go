package certcmd

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/cobra"
)

type createOptions struct {
	certPath, keyPath     string
	keyType               pki.KeyType
	san                   sanFlags
	validity              validityFlags
	notBefore             time.Time
	isCA                  bool
	client                bool
	name                  string
	issuerCert, issuerKey string
	encrypt, force, json  bool
	pass, issuerPass      *cli.Passphrase
	kms                   string
	tokenPIN              *cli.TokenPIN
}

func newCreateCmd(env *Env) *cobra.Command {
	o := &createOptions{pass: env.passphrase(), issuerPass: env.passphrase(), tokenPIN: env.tokenPIN()}
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Make one key and certificate: a server certificate or a CA, self-signed or issued",
		Long: `create makes a certificate, and a new key for it — or, when --key names a
key that exists, a certificate for that key: the key is used as it is and
never overwritten, so every pin of it stays valid (--force then replaces
only the certificate).

By default the certificate is a self-signed server certificate (CA:FALSE,
digitalSignature, serverAuth) valid 90 days, for localhost, 127.0.0.1, ::1
and the host name unless --dns or --ip name others. --ca makes a CA
certificate instead (CA:TRUE, path length 0, keyCertSign, cRLSign) valid 10
years. --issuer-cert and --issuer-key have an existing CA sign it.

--client makes a player's certificate instead (CA:FALSE, digitalSignature,
clientAuth only: it cannot serve), named --name (its subject CN; SANs only
from --dns and --ip), issued by the client CA: by default certs/client-ca.crt
and certs/client-ca.key, which sc-cert init --client-ca makes. Files default
to NAME.crt and NAME.key. The server admits it by its CA (sc-server
--client-ca) or by its pin (sc-cert clients allow).

Every certificate gets a random 128-bit serial, a Subject Key Identifier and
an Authority Key Identifier, and starts 5 minutes in the past for clock skew.
Keys are written as PKCS#8 with mode 0600, certificates with mode 0644, both
atomically; existing files are left alone unless --force is given.

With --kms URI the new key is made inside a PKCS#11 token instead, as the
URI's object (label) and id, which are both required; it is sensitive and
not extractable, so only the certificate is written to disk. P-256, P-384
and RSA 2048 to 4096 (not Ed25519). --key and --issuer-key also take a key
in a token: a pkcs11: URI, or a .uri file holding one. The PIN comes from
pin-source=FILE in the URI, else --token-pin-file FILE, else $SC_TOKEN_PIN.`,
		Example: `  sc-cert create --cert server.crt --key server.key --dns game.example
  sc-cert create --ca --cert ca.crt --key ca.key --cn "Game CA" --key-type ecdsa-p384
  sc-cert create --cert s.crt --key s.key --issuer-cert ca.crt --issuer-key ca.key --validity 30d
  sc-cert create --cert s.crt --key s.key --key-type rsa-4096 --not-after 2027-01-31T00:00:00Z
  sc-cert create --cert s.crt --key s.key --password-file pw.txt   # encrypted key
  sc-cert create --key certs/server.key --cert certs/game.crt      # a certificate for an existing key
  sc-cert create --client --name alice                             # alice.crt, alice.key from certs/client-ca.*
  sc-cert create --cert game.crt --kms 'pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=sc;id=%10;object=game?pin-source=pin.txt'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.pass.Prompt, o.issuerPass.Prompt = cmd.ErrOrStderr(), cmd.ErrOrStderr()
			o.pass.Context, o.issuerPass.Context = cmd.Context(), cmd.Context()
			return runCreate(cmd.OutOrStdout(), cmd.ErrOrStderr(), env, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.certPath, "cert", "", "certificate `FILE` to write (default server.crt, or ca.crt with --ca)")
	fs.StringVar(&o.keyPath, "key", "", "key `FILE`: a new key is written there; an existing one is used as it is, never replaced (default server.key, or ca.key with --ca)"+cli.KeyRefHelp()+" (used as it is)")
	fs.StringVar(&o.kms, "kms", "", "make the new key in the PKCS#11 token this pkcs11: `URI` names, as its object and id (both required); only the certificate is written")
	fs.Var(keyTypeValue{&o.keyType}, "key-type", "key `type` of a new key: "+keyTypeNames()+" (default ecdsa-p256)")
	o.san.add(fs)
	o.validity.add(fs, "90d, or 10y with --ca")
	fs.Var(timeValue{&o.notBefore}, "not-before", "start of validity as an RFC 3339 `TIME` (default: now minus 5 minutes)")
	fs.BoolVar(&o.isCA, "ca", false, "make a CA certificate")
	fs.BoolVar(&o.client, "client", false, "make a client certificate (clientAuth only), issued by the client CA (default certs/client-ca.crt and certs/client-ca.key)")
	fs.StringVar(&o.name, "name", "", "with --client, the player's `NAME`: the subject CN, and the default file names NAME.crt and NAME.key (letters, digits, . _ - @ +)")
	fs.StringVar(&o.issuerCert, "issuer-cert", "", "CA certificate `FILE` that signs (default: self-signed)")
	fs.StringVar(&o.issuerKey, "issuer-key", "", "key `FILE` of the CA that signs"+cli.KeyRefHelp())
	fs.BoolVar(&o.encrypt, "encrypt-key", false, "encrypt the new key with a passphrase (PKCS#8, PBES2); implied by --password-file")
	o.pass.AddFlags(fs)
	fs.StringVar(&o.issuerPass.File, "issuer-password-file", "", "read the issuer key's passphrase from `FILE` (else $SC_KEY_PASSWORD, else a prompt)")
	o.tokenPIN.AddFlags(fs)
	fs.BoolVar(&o.force, "force", false, "replace an existing certificate (an existing key is always kept)")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	cmd.MarkFlagsMutuallyExclusive("validity", "not-after")
	cmd.MarkFlagsRequiredTogether("issuer-cert", "issuer-key")
	cmd.MarkFlagsMutuallyExclusive("client", "ca")
	for _, f := range []string{"key", "encrypt-key", "password-file"} {
		cmd.MarkFlagsMutuallyExclusive("kms", f)
	}
	cli.CompleteValues(cmd, "key-type", keyTypeList()...)
	return cmd
}

type createJSON struct {
	Cert        string    `json:"cert"`
	Key         string    `json:"key"`
	KeyType     string    `json:"key_type"`
	IsCA        bool      `json:"is_ca"`
	SelfSigned  bool      `json:"self_signed"`
	Serial      string    `json:"serial"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	DNSNames    []string  `json:"dns_names"`
	IPs         []string  `json:"ip_addresses"`
	Pin         string    `json:"pin"`
	Fingerprint string    `json:"sha256_fingerprint"`
	Encrypted   bool      `json:"encrypted"`
	// KeyExisted is set when --key named an existing key, which was used
	// as it is.
	KeyExisted bool `json:"key_existed"`
	// InToken is set for a key kept in a PKCS#11 token; Key is then its
	// URI, PIN redacted.
	InToken bool `json:"in_token"`
}

func runCreate(stdout, stderr io.Writer, env *Env, o *createOptions) error {
	if o.client {
		if !pinning.ValidClientName(o.name) {
			return cli.Usagef("--client needs --name NAME: 1 to %d letters, digits or . _ - @ + (got %q)", pinning.MaxClientNameLen, o.name)
		}
		if o.san.cn == "" {
			o.san.cn = o.name
		}
		if o.certPath == "" {
			o.certPath = o.name + ".crt"
		}
		if o.keyPath == "" {
			o.keyPath = o.name + ".key"
		}
		if o.issuerCert == "" {
			o.issuerCert = filepath.Join(pki.DefaultLayout("").Dir, pki.ClientCACertFile)
			o.issuerKey = filepath.Join(pki.DefaultLayout("").Dir, pki.ClientCAKeyFile)
			if _, err := os.Stat(o.issuerCert); err != nil {
				return cli.WithHint(fmt.Errorf("no client CA at %s to issue the client certificate", o.issuerCert),
					"make one with: sc-cert init --client-ca (or name another with --issuer-cert and --issuer-key)")
			}
		}
	} else if o.name != "" {
		return cli.Usagef("--name is for --client; a server certificate's names are --dns, --ip and --cn")
	}
	if o.certPath == "" {
		o.certPath = map[bool]string{false: pki.ServerCertFile, true: pki.CACertFile}[o.isCA]
	}
	tokens := openTokens(stderr, o.tokenPIN, "--key", o.keyPath, "--kms", o.kms, "--issuer-key", o.issuerKey)
	defer tokens.Close()
	if o.kms != "" {
		o.keyPath = o.kms
	}
	if o.keyPath == "" {
		o.keyPath = map[bool]string{false: pki.ServerKeyFile, true: pki.CAKeyFile}[o.isCA]
	}
	if filepath.Clean(o.certPath) == filepath.Clean(o.keyPath) {
		return cli.Usagef("--cert and --key name the same file %q", o.certPath)
	}
	if err := o.san.validate(); err != nil {
		return err
	}
	// An existing key is used, never replaced: a certificate for it keeps
	// every pin of it (issue 12: the only way was --force, which made a
	// new key and changed the pin).
	var existing *pki.Key
	if _, err := os.Stat(o.keyPath); err == nil || (pki.IsKeyURI(o.keyPath) && o.kms == "") {
		k, err := pki.ReadKeyFile(o.keyPath, pki.KeyOptions{Passphrase: o.pass.Source(o.keyPath), RequirePrivateFile: true, Tokens: tokens})
		if err != nil {
			return cli.TokenHint(keyHint(err, o.certPath, o.keyPath))
		}
		if o.keyType != "" {
			if kt, err := pki.KeyTypeOf(k.Signer.Public()); err == nil && kt != o.keyType {
				return cli.Usagef("--key-type %s, but the existing key %s is %s: drop --key-type to use it, or name a new key file", o.keyType, o.keyPath, kt)
			}
		}
		if o.encrypt || (o.pass.File != "" && !k.Encrypted) {
			return cli.Usagef("--key %s exists and is used as it is: --encrypt-key and --password-file apply to a new key only", o.keyPath)
		}
		existing = k
	}
	if err := checkAbsent(o.force, o.certPath); err != nil {
		return cli.WithHint(err, existHint(err, "--force"))
	}
	var issuer *x509.Certificate
	var issuerKey crypto.Signer
	if o.issuerCert != "" {
		pair, err := pki.LoadPair(o.issuerCert, o.issuerKey, pki.LoadOptions{
			Key: pki.KeyOptions{Passphrase: o.issuerPass.Source(o.issuerKey), Tokens: tokens}, NoRecover: true, Now: env.Now})
		if err != nil {
			return cli.TokenHint(fmt.Errorf("loading the issuer: %w", err))
		}
		issuer, issuerKey = pair.Leaf(), pair.Key.Signer
	}
	var pass []byte
	if existing == nil && (o.encrypt || o.pass.File != "") {
		var err error
		if pass, err = o.pass.ForNewKey(o.keyPath); err != nil {
			return err
		}
	}
	var key crypto.Signer
	var made *pki.Key // a key made in the token
	switch {
	case existing != nil:
		key = existing.Signer
	case o.kms != "":
		var err error
		if made, err = tokens.CreateKey(o.kms, o.keyType); err != nil {
			return cli.TokenHint(fmt.Errorf("making the key in the token: %w", err))
		}
		key, o.keyPath = made.Signer, made.URI
		// A key made for a certificate that was never written is removed
		// again, so that the label is free for the next try.
		defer func() {
			if made != nil {
				_ = tokens.DeleteKey(made.URI)
			}
		}()
	default:
		stop := func() {}
		if o.keyType == pki.KeyRSA4096 {
			stop = cli.StartSpinner(stderr, "generating an RSA-4096 key")
		}
		var err error
		key, err = pki.GenerateKey(o.keyType)
		stop()
		if err != nil {
			return err
		}
	}
	if issuerKey == nil {
		issuerKey = key
	}
	cert, err := pki.CreateCertificate(key.Public(), pki.CertOptions{
		CommonName:  o.san.cn,
		DNSNames:    o.san.dns,
		IPAddresses: o.san.ips,
		IsCA:        o.isCA,
		Client:      o.client,
		Validity:    o.validity.validity,
		NotBefore:   o.notBefore,
		NotAfter:    o.validity.notAfter,
		Issuer:      issuer,
		IssuerKey:   issuerKey,
		Now:         env.Now,
	})
	if err != nil {
		return err
	}
	// The key first: a certificate without its key is useless, a key
	// without a certificate harmless. An existing key is never written,
	// nor is one made in a token.
	if existing == nil && made == nil {
		if err := pki.WriteKeyFile(o.keyPath, key, pki.WriteOptions{Passphrase: pass}); err != nil {
			return cli.WithHint(err, existHint(err, "--force"))
		}
	}
	if err := pki.WriteCertificatesFile(o.certPath, []*x509.Certificate{cert}, pki.WriteOptions{Overwrite: o.force}); err != nil {
		return cli.WithHint(err, existHint(err, "--force"))
	}
	keyDesc, _ := cli.DescribeKey(cert.PublicKey)
	inToken := made != nil || (existing != nil && existing.URI != "")
	made = nil // the certificate is written: the key is in use
	out := createJSON{
		Cert: o.certPath, Key: o.keyPath, KeyType: keyDesc, IsCA: cert.IsCA,
		SelfSigned: issuer == nil, Serial: pki.SerialHex(cert.SerialNumber),
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
		DNSNames: nonNil(cert.DNSNames), IPs: ipStrings(cert.IPAddresses),
		Pin: pinOfCert(cert), Fingerprint: pki.Fingerprint(cert), Encrypted: len(pass) > 0 || (existing != nil && existing.Encrypted),
		KeyExisted: existing != nil,
		InToken:    inToken,
	}
	if out.InToken {
		out.Key = display(o.keyPath)
	}
	if o.json {
		return cli.PrintJSON(stdout, out)
	}
	what := "server certificate"
	switch {
	case cert.IsCA:
		what = "CA certificate"
	case o.client:
		what = "client certificate for " + o.name
	}
	how := "self-signed"
	if issuer != nil {
		how = "issued by " + o.issuerCert
	}
	fmt.Fprintf(stdout, "Created %s (%s, %s, %s) valid until %s\n", o.certPath, what, out.KeyType, how, cert.NotAfter.Format(time.RFC3339))
	enc := ""
	if out.Encrypted {
		enc = ", encrypted"
	}
	switch {
	case existing != nil:
		fmt.Fprintf(stdout, "Used the existing key %s as it is (its pin is unchanged)\n", out.Key)
	case inToken:
		fmt.Fprintf(stdout, "Made the key in the token (%s, sensitive, not extractable): %s\n", out.KeyType, out.Key)
	default:
		fmt.Fprintf(stdout, "Created %s (private key, mode 0600%s)\n", o.keyPath, enc)
	}
	fmt.Fprintf(stdout, "Pin: %s\nSHA-256 fingerprint: %s\n", out.Pin, out.Fingerprint)
	if o.client {
		fmt.Fprintf(stdout, "Connect with: sc-client --identity %s ...  (admitted by sc-server --client-ca %s, or by its pin: sc-cert clients allow %s --name %s --file FILE)\n", o.keyPath, o.issuerCert, out.Pin, o.name)
	}
	return nil
}
