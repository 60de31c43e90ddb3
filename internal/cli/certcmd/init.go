package certcmd

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/cobra"
)

type initOptions struct {
	dir        string
	selfSigned bool
	keyType    pki.KeyType
	caKeyType  pki.KeyType
	san        sanFlags
	validity   validityFlags
	caValidity time.Duration
	encrypt    bool
	force      bool
	json       bool
	pass       *cli.Passphrase
	clientCA   bool
	// offlineNext moves the next key there (sc-cert export-next) once the
	// layout is made.
	offlineNext string
	kms         string
	tokenPIN    *cli.TokenPIN
}

func newInitCmd(env *Env) *cobra.Command {
	o := &initOptions{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Make the default certificate layout: a local CA, the server certificate and keys",
		Long: `init makes a certificate directory in one step (all files appear together or
none does):

  ca.crt           the local CA certificate: give it to CA-file clients
  ca.key           the local CA key (0600): lets sc-cert rotate and sc-server
                   renew the server certificate; move it offline if you prefer
                   and name it with --issuer-key when renewing
  server.crt       the server certificate, issued by the CA
  server.key       the server key (0600)
  server.next.key  the next server key (0600), made ahead of time so its pin
                   can be handed out before the rollover (rotate --promote-next)

With --self-signed it makes the plain layout instead: server.crt is
self-signed, ca.crt is a copy of it and there is no ca.key (--force over
a CA layout removes the old one). Every re-issue then invalidates the copy
CA-file clients hold.

With --kms URI the keys are made in a PKCS#11 token (an HSM, a YubiKey,
SoftHSM2) and never exist anywhere else: the URI names the token, e.g.

  pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=sc?pin-source=/etc/space-captain/token-pin

and each key gets a fixed label (object) and id in it: the CA key sc-ca
(id 01), the server key sc-server (id 02) and the next key sc-server-next
(id 03). Small files beside the certificates name them, where the key
files would be: ca.uri, server.uri and server.next.uri (0600, one URI each,
no PIN), so sc-cert and sc-server find the keys without the URI being
typed again. The PIN comes from pin-source=FILE in the URI, else
--token-pin-file FILE, else $SC_TOKEN_PIN. A token that already holds a key
under one of these labels is refused, --force or not: keys in a token are
never replaced. P-256, P-384 and RSA keys only (not Ed25519).

It prints the pins of the server key and the next key, and what to do next.
Existing files are left alone unless --force is given.

With --client-ca it makes only a CA for players' certificates, beside the
server's files and apart from their CA (every self-renewing server holds
ca.key, so one compromised server could otherwise mint players):

  client-ca.crt    the client CA certificate: give it to sc-server --client-ca
  client-ca.key    its key (0600): signs players' certificates (sc-cert create
                   --client); the server never needs it, keep it offline`,
		Example: `  sc-cert init
  sc-cert init --dir /etc/space-captain --dns game.example --ip 192.0.2.10
  sc-cert init --self-signed --key-type ed25519
  SC_KEY_PASSWORD=... sc-cert init --encrypt-key --json
  sc-cert init --client-ca                  # certs/client-ca.crt and certs/client-ca.key
  sc-cert init --kms 'pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=sc?pin-source=/etc/space-captain/token-pin'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.pass.Prompt, o.pass.Context = cmd.ErrOrStderr(), cmd.Context()
			return runInit(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), env, o)
		},
	}
	o.pass = env.passphrase()
	o.tokenPIN = env.tokenPIN()
	fs := cmd.Flags()
	fs.StringVar(&o.dir, "dir", pki.DefaultLayout("").Dir, "`DIR`ectory to make the files in (created if missing)")
	fs.BoolVar(&o.selfSigned, "self-signed", false, "make a self-signed server certificate and no CA (ca.crt is a copy of server.crt)")
	fs.Var(keyTypeValue{&o.keyType}, "key-type", "server and next key `type`: "+keyTypeNames()+" (default ecdsa-p256)")
	fs.Var(keyTypeValue{&o.caKeyType}, "ca-key-type", "CA key `type` (default: --key-type)")
	o.san.add(fs)
	o.validity.add(fs, "90d")
	cli.PositiveDurationVar(fs, &o.caValidity, "ca-validity", 0, "how long the CA is valid, as a `DURATION` (default 10y)")
	fs.BoolVar(&o.encrypt, "encrypt-key", false, "encrypt server.key and server.next.key with a passphrase (PKCS#8, PBES2); the server then needs it to start")
	o.pass.AddFlags(fs)
	fs.StringVar(&o.kms, "kms", "", "make the keys in the PKCS#11 token this pkcs11: `URI` names (module-path, token, pin-source; no object or id) and write ca.uri, server.uri and server.next.uri naming them")
	o.tokenPIN.AddFlags(fs)
	fs.BoolVar(&o.force, "force", false, "replace existing files (never keys in a token)")
	fs.StringVar(&o.offlineNext, "offline-next", "", "keep the next key offline: move it to `DIR` (made if missing) and leave only its public half, server.next.pub, in the layout (as sc-cert export-next)")
	cmd.MarkFlagsMutuallyExclusive("kms", "offline-next")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	fs.BoolVar(&o.clientCA, "client-ca", false, "make only a CA for players' certificates: client-ca.crt and client-ca.key in --dir (--key-type, --ca-validity, --cn and --encrypt-key apply to it)")
	for _, f := range []string{"self-signed", "ca-key-type", "dns", "ip", "validity", "not-after", "kms"} {
		cmd.MarkFlagsMutuallyExclusive("client-ca", f)
	}
	cmd.MarkFlagsMutuallyExclusive("validity", "not-after")
	cmd.MarkFlagsMutuallyExclusive("self-signed", "ca-key-type")
	cmd.MarkFlagsMutuallyExclusive("self-signed", "ca-validity")
	cmd.MarkFlagsMutuallyExclusive("kms", "encrypt-key")
	cmd.MarkFlagsMutuallyExclusive("kms", "password-file")
	cli.CompleteValues(cmd, "key-type", keyTypeList()...)
	cli.CompleteValues(cmd, "ca-key-type", keyTypeList()...)
	return cmd
}

type initJSON struct {
	Dir        string    `json:"dir"`
	SelfSigned bool      `json:"self_signed"`
	Files      []fileRef `json:"files"`
	Pin        string    `json:"pin"`
	NextPin    string    `json:"next_pin"`
	CAPin      string    `json:"ca_pin"`
	NotAfter   time.Time `json:"not_after"`
	DNSNames   []string  `json:"dns_names"`
	IPs        []string  `json:"ip_addresses"`
	// Token is the token holding the keys (--kms), its PIN redacted.
	Token string `json:"token,omitempty"`
}

type fileRef struct {
	Path string `json:"path"`
	Role string `json:"role"`
}

func runInit(ctx context.Context, stdout, stderr io.Writer, env *Env, o *initOptions) error {
	if o.clientCA {
		return runInitClientCA(ctx, stdout, env, o)
	}
	if err := o.san.validate(); err != nil {
		return err
	}
	opts := pki.InitOptions{
		Dir:         o.dir,
		SelfSigned:  o.selfSigned,
		KeyType:     o.keyType,
		CAKeyType:   o.caKeyType,
		CommonName:  o.san.cn,
		DNSNames:    o.san.dns,
		IPAddresses: o.san.ips,
		Validity:    o.validity.validity,
		NotAfter:    o.validity.notAfter,
		CAValidity:  o.caValidity,
		Overwrite:   o.force,
		Now:         env.Now,
	}
	if o.kms != "" {
		tokens := openTokens(stderr, o.tokenPIN, "--kms", o.kms)
		defer tokens.Close()
		opts.Token, opts.Tokens = o.kms, tokens
	}
	if o.encrypt || o.pass.File != "" {
		pw, err := o.pass.ForNewKey("the new server key")
		if err != nil {
			return err
		}
		opts.KeyPassphrase = pw
	}
	stop := func() {}
	if o.keyType == pki.KeyRSA4096 || o.caKeyType == pki.KeyRSA4096 {
		stop = cli.StartSpinner(stderr, "generating RSA-4096 keys")
	}
	res, err := pki.InitLayout(ctx, opts)
	stop()
	if err != nil {
		return cli.TokenHint(cli.WithHint(err, existHint(err, "--force")))
	}
	l := res.Layout
	out := initJSON{
		Dir:        l.Dir,
		SelfSigned: res.SelfSigned,
		Pin:        pinOfCert(res.Server),
		NextPin:    pinOfKey(res.NextKey),
		CAPin:      pinOfCert(res.CA),
		NotAfter:   res.Server.NotAfter,
		DNSNames:   nonNil(res.Server.DNSNames),
		IPs:        ipStrings(res.Server.IPAddresses),
	}
	inToken := func(role, object string, id int) string {
		if o.kms == "" {
			return role
		}
		return fmt.Sprintf("%s: in the token, object %s (id %02x)", role, object, id)
	}
	if o.kms != "" {
		out.Token = display(o.kms)
	}
	if res.SelfSigned {
		out.Files = []fileRef{{l.CACert, "copy of the self-signed server certificate (for CA-file clients)"}}
	} else {
		out.Files = []fileRef{{l.CACert, "local CA certificate (for CA-file clients)"}, {l.CAKey, inToken("local CA key", pki.TokenObjectCA, pki.TokenIDCA)}}
	}
	out.Files = append(out.Files, fileRef{l.ServerCert, "server certificate"}, fileRef{l.ServerKey, inToken("server key", pki.TokenObjectServer, pki.TokenIDServer)})
	if o.offlineNext != "" {
		if err := os.MkdirAll(o.offlineNext, 0o700); err != nil {
			return fmt.Errorf("making %s for the offline next key: %w", o.offlineNext, err)
		}
		pw := opts.KeyPassphrase
		ex, err := exportNext(ctx, l.NextKey, o.offlineNext, false, func() ([]byte, error) { return pw, nil })
		if err != nil {
			return fmt.Errorf("the layout is made, but the next key could not be taken offline (run sc-cert export-next --dir %s --to %s): %w", l.Dir, o.offlineNext, err)
		}
		fmt.Fprintf(stderr, "sc-cert: warning: %s removed: %s\n", l.NextKey, residueWarning)
		out.Files = append(out.Files, fileRef{ex.Public, "public half of the next key (the private half is offline)"}, fileRef{ex.MovedTo, "next server key, OFFLINE: keep it off the server until the rollover"})
	} else {
		out.Files = append(out.Files, fileRef{l.NextKey, inToken("next server key", pki.TokenObjectNext, pki.TokenIDNext)})
	}
	if res.RemovedCAKey != "" {
		fmt.Fprintf(stderr, "sc-cert: removed %s: the self-signed layout has no CA\n", res.RemovedCAKey)
	}
	for _, f := range res.Removed {
		fmt.Fprintf(stderr, "sc-cert: removed %s: the new layout's keys are elsewhere\n", f)
	}
	if res.SelfSigned {
		fmt.Fprintf(stderr, "sc-cert: warning: %s is a copy of the self-signed %s: CA-file clients need the new copy after every re-issue (sc-cert rotate --cert %s --key %s); pin and TOFU clients keep working\n", l.CACert, l.ServerCert, l.ServerCert, l.ServerKey)
	}
	if o.json {
		return cli.PrintJSON(stdout, out)
	}
	kind := "a local CA issues the server certificate"
	if res.SelfSigned {
		kind = "self-signed server certificate"
	}
	fmt.Fprintf(stdout, "Created %s (%s):\n", l.Dir, kind)
	for _, f := range out.Files {
		fmt.Fprintf(stdout, "  %-28s %s\n", f.Path, f.Role)
	}
	if o.kms != "" {
		fmt.Fprintf(stdout, "\nThe keys are in the PKCS#11 token %s; the .uri files name them (no PIN in them).\n", out.Token)
	}
	names := append(append([]string{}, out.DNSNames...), out.IPs...)
	fmt.Fprintf(stdout, "\nThe server certificate is for %s and valid until %s.\n", strings.Join(names, ", "), res.Server.NotAfter.Format(time.RFC3339))
	fmt.Fprintf(stdout, "\nPin (server key): %s\nPin (next key):   %s\n", out.Pin, out.NextPin)
	printNext(stdout, res, out)
	return nil
}

// printNext says what to do with the new layout: the commands that serve
// it and connect to it as each kind of client, with the names the
// certificate is valid for. (The server speaks the Space Captain protocol,
// not HTTP, so an https:// URL would fail whatever the trust.)
func printNext(w io.Writer, res *pki.InitResult, out initJSON) {
	l := res.Layout
	host := "localhost"
	switch {
	case len(out.DNSNames) > 0:
		host = out.DNSNames[0]
	case len(out.IPs) > 0:
		host = out.IPs[0]
	}
	server := net.JoinHostPort(host, "4242")
	serve := "sc-server"
	if filepath.Clean(l.Dir) != pki.DefaultLayout("").Dir {
		serve = fmt.Sprintf("sc-server --cert %s --key %s", l.ServerCert, l.ServerKey)
	}
	if out.Token != "" && !strings.Contains(out.Token, "pin-source=") {
		serve += " --token-pin-file FILE (or $" + cli.TokenPINEnv + ")"
	}
	fmt.Fprintf(w, "\nNext:\n")
	fmt.Fprintf(w, "  - serve it: %s\n", serve)
	fmt.Fprintf(w, "  - CA-file clients trust %s:\n      sc-client echo hello --server %s --ca %s\n", l.CACert, server, l.CACert)
	fmt.Fprintf(w, "  - pin clients take both pins (current, then next):\n      sc-client echo hello --server %s --pin '%s' --pin '%s'\n", server, out.Pin, out.NextPin)
	fmt.Fprintf(w, "  - renew before %s: sc-cert rotate --cert %s --key %s\n", res.Server.NotAfter.Format("2006-01-02"), l.ServerCert, l.ServerKey)
}

func ipStrings(ips []net.IP) []string {
	s := []string{}
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	return s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// runInitClientCA is init --client-ca.
func runInitClientCA(ctx context.Context, stdout io.Writer, env *Env, o *initOptions) error {
	opts := pki.ClientCAOptions{Dir: o.dir, KeyType: o.keyType, CommonName: o.san.cn, Validity: o.caValidity, Overwrite: o.force, Now: env.Now}
	if o.encrypt || o.pass.File != "" {
		pw, err := o.pass.ForNewKey("the new client CA key")
		if err != nil {
			return err
		}
		opts.KeyPassphrase = pw
	}
	res, err := pki.InitClientCA(ctx, opts)
	if err != nil {
		return cli.WithHint(err, existHint(err, "--force"))
	}
	if o.json {
		return cli.PrintJSON(stdout, struct {
			Dir      string    `json:"dir"`
			Files    []fileRef `json:"files"`
			CAPin    string    `json:"ca_pin"`
			NotAfter time.Time `json:"not_after"`
		}{o.dir, []fileRef{{res.CertPath, "client CA certificate"}, {res.KeyPath, "client CA key"}}, pinOfCert(res.CA), res.CA.NotAfter})
	}
	fmt.Fprintf(stdout, "Created the client CA (valid until %s):\n", res.CA.NotAfter.Format(time.RFC3339))
	fmt.Fprintf(stdout, "  %-28s %s\n  %-28s %s\n", res.CertPath, "client CA certificate: give it to sc-server --client-ca", res.KeyPath, "client CA key (0600): signs players' certificates; the server never needs it")
	fmt.Fprintf(stdout, "\nPin (client CA key): %s\n", pinOfCert(res.CA))
	fmt.Fprintf(stdout, "\nNext:\n  - serve with it: sc-server --client-auth require --client-ca %s\n", res.CertPath)
	fmt.Fprintf(stdout, "  - issue a player's certificate: sc-cert create --client --name alice --issuer-cert %s --issuer-key %s\n", res.CertPath, res.KeyPath)
	return nil
}
