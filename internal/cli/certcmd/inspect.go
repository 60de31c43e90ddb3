package certcmd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/cobra"
)

type inspectOptions struct {
	serverName string
	timeout    time.Duration
	udp        bool
	json       bool
	pass       *cli.Passphrase
	tokenPIN   *cli.TokenPIN
}

func newInspectCmd(env *Env) *cobra.Command {
	o := &inspectOptions{pass: env.passphrase(), tokenPIN: env.tokenPIN()}
	cmd := &cobra.Command{
		Use:   "inspect FILE|HOST:PORT",
		Short: "Show what is in a certificate, chain or key file, or what a server presents",
		Long: `inspect prints the essentials of each certificate — subject, issuer, serial,
validity and time left, names, key type and size, signature algorithm and
extensions — with its SHA-256 fingerprint (as openssl x509 -fingerprint
-sha256 prints it) and its pin (sha256//BASE64, as curl --pinnedpubkey takes
it).

FILE may hold certificates (a chain, leaf first) or a private key; for a key
it prints the type, format and pin, and warns when others may read the file.
A key in a PKCS#11 token is given as its pkcs11: URI, or a .uri file holding
one (the PIN from pin-source=FILE in the URI, else --token-pin-file FILE,
else $SC_TOKEN_PIN); the private key stays in the token.
When no file of that name exists the argument is read as HOST:PORT: inspect
connects with TLS and shows the chain the server presents. Nothing is
verified, so nothing shown is authenticated — use it to look, and verify or
pin to trust.`,
		Example: `  sc-cert inspect certs/server.crt
  sc-cert inspect certs/server.key
  sc-cert inspect certs/server.uri          # a key in a PKCS#11 token
  sc-cert inspect localhost:4242
  sc-cert inspect --server-name game.example 192.0.2.10:4242 --json`,
		Args: cli.ExactArgs(1, "one FILE or HOST:PORT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.pass.Prompt, o.pass.Context = cmd.ErrOrStderr(), cmd.Context()
			return runInspect(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), env, args[0], o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.serverName, "server-name", "", "TLS server `NAME` (SNI) to ask for (default: the host of HOST:PORT)")
	cli.PositiveDurationVar(fs, &o.timeout, "timeout", 10*time.Second, "how long to wait for a server to connect and handshake")
	addUDPFlag(fs, &o.udp)
	o.pass.AddFlags(fs)
	o.tokenPIN.AddFlags(fs)
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	return cmd
}

type inspectJSON struct {
	Source       string     `json:"source"`
	Kind         string     `json:"kind"` // "certificates", "private key"
	TLS          *tlsJSON   `json:"tls,omitempty"`
	Certificates []certJSON `json:"certificates,omitempty"`
	Key          *keyJSON   `json:"key,omitempty"`
}

type tlsJSON struct {
	Version     string `json:"version"`
	CipherSuite string `json:"cipher_suite"`
	ServerName  string `json:"server_name,omitempty"`
	Verified    bool   `json:"verified"`
}

type certJSON struct {
	Subject            string    `json:"subject"`
	Issuer             string    `json:"issuer"`
	Serial             string    `json:"serial"`
	NotBefore          time.Time `json:"not_before"`
	NotAfter           time.Time `json:"not_after"`
	Status             string    `json:"status"` // "valid", "expired", "not yet valid"
	SecondsLeft        int64     `json:"seconds_left"`
	DNSNames           []string  `json:"dns_names"`
	IPAddresses        []string  `json:"ip_addresses"`
	KeyType            string    `json:"key_type"`
	KeyBits            int       `json:"key_bits"`
	SignatureAlgorithm string    `json:"signature_algorithm"`
	IsCA               bool      `json:"is_ca"`
	MaxPathLen         *int      `json:"max_path_len,omitempty"`
	KeyUsage           []string  `json:"key_usage"`
	ExtKeyUsage        []string  `json:"ext_key_usage"`
	SubjectKeyID       string    `json:"subject_key_id"`
	AuthorityKeyID     string    `json:"authority_key_id"`
	SelfSigned         bool      `json:"self_signed"`
	Extensions         []extJSON `json:"extensions"`
	Fingerprint        string    `json:"sha256_fingerprint"`
	Pin                string    `json:"pin"`
}

type extJSON struct {
	OID      string `json:"oid"`
	Name     string `json:"name"`
	Critical bool   `json:"critical"`
}

type keyJSON struct {
	Type       string `json:"type"`
	Bits       int    `json:"bits"`
	Format     string `json:"format"`
	Encrypted  bool   `json:"encrypted"`
	Mode       string `json:"mode,omitempty"`
	Private    bool   `json:"private_file"`
	Pin        string `json:"pin"`
	KeyTypeArg string `json:"key_type,omitempty"`
	// URI names a key kept in a PKCS#11 token, its PIN redacted.
	URI string `json:"uri,omitempty"`
}

func runInspect(ctx context.Context, stdout, stderr io.Writer, env *Env, arg string, o *inspectOptions) error {
	tokens := openTokens(stderr, o.tokenPIN, "the argument", arg)
	defer tokens.Close()
	src, err := loadTarget(ctx, arg, targetOptions{serverName: o.serverName, timeout: o.timeout, pass: o.pass, udp: o.udp, tokens: tokens})
	if err != nil {
		return err
	}
	if src.handshakeErr != nil {
		fmt.Fprintf(stderr, "sc-cert: warning: %s presented this chain but did not complete the handshake (%v): it has not proved it holds the key, so nothing shown belongs to it for sure\n", arg, src.handshakeErr)
	}
	out := describeTarget(src, env.now())
	if out.Key != nil && !out.Key.Private {
		fmt.Fprintf(stderr, "sc-cert: warning: %s is readable by group or others (mode %s): run chmod 600 %s\n", src.name, out.Key.Mode, src.name)
	}
	if o.json {
		return cli.PrintJSON(stdout, out)
	}
	printInspect(stdout, out)
	return nil
}

func describeTarget(src *target, now time.Time) inspectJSON {
	out := inspectJSON{Source: src.name, Kind: "certificates"}
	if src.state != nil {
		out.TLS = &tlsJSON{
			Version:     versionName(src),
			CipherSuite: tls.CipherSuiteName(src.state.CipherSuite),
			ServerName:  src.state.ServerName,
		}
	}
	if src.key != nil {
		desc, bits := cli.DescribeKey(src.key.Signer.Public())
		out.Kind = "private key"
		k := &keyJSON{
			Type:      desc,
			Bits:      bits,
			Format:    src.key.Format,
			Encrypted: src.key.Encrypted,
			Private:   src.key.Mode&0o077 == 0,
			Pin:       pinOfKey(src.key.Signer.Public()),
			URI:       src.key.URI,
		}
		if src.key.Mode != 0 {
			k.Mode = fmt.Sprintf("%04o", src.key.Mode)
		}
		if kt, err := pki.KeyTypeOf(src.key.Signer.Public()); err == nil {
			k.KeyTypeArg = string(kt)
		}
		out.Key = k
		return out
	}
	for _, c := range src.certs {
		out.Certificates = append(out.Certificates, describeCert(c, now))
	}
	return out
}

func describeCert(c *x509.Certificate, now time.Time) certJSON {
	keyDesc, bits := cli.DescribeKey(c.PublicKey)
	j := certJSON{
		Subject:            c.Subject.String(),
		Issuer:             c.Issuer.String(),
		Serial:             pki.SerialHex(c.SerialNumber),
		NotBefore:          c.NotBefore.UTC(),
		NotAfter:           c.NotAfter.UTC(),
		SecondsLeft:        int64(c.NotAfter.Sub(now) / time.Second),
		DNSNames:           nonNil(c.DNSNames),
		IPAddresses:        ipStrings(c.IPAddresses),
		KeyType:            keyDesc,
		KeyBits:            bits,
		SignatureAlgorithm: c.SignatureAlgorithm.String(),
		IsCA:               c.IsCA,
		KeyUsage:           keyUsageNames(c.KeyUsage),
		ExtKeyUsage:        extKeyUsageNames(c),
		SubjectKeyID:       colonHex(c.SubjectKeyId),
		AuthorityKeyID:     colonHex(c.AuthorityKeyId),
		SelfSigned:         pki.IsSelfSigned(c),
		Fingerprint:        pki.Fingerprint(c),
		Pin:                pinOfCert(c),
	}
	switch {
	case now.Before(c.NotBefore):
		j.Status = "not yet valid"
	case now.After(c.NotAfter):
		j.Status = "expired"
	default:
		j.Status = "valid"
	}
	if c.IsCA && (c.MaxPathLen > 0 || c.MaxPathLenZero) {
		n := c.MaxPathLen
		j.MaxPathLen = &n
	}
	for _, e := range c.Extensions {
		j.Extensions = append(j.Extensions, extJSON{OID: e.Id.String(), Name: extName(e.Id), Critical: e.Critical})
	}
	return j
}

func printInspect(w io.Writer, out inspectJSON) {
	if out.TLS != nil {
		fmt.Fprintf(w, "%s: %s, %s (not verified: nothing below is authenticated)\n", out.Source, out.TLS.Version, out.TLS.CipherSuite)
	}
	if k := out.Key; k != nil {
		fmt.Fprintf(w, "%s: private key\n", out.Source)
		row(w, "Type", k.Type)
		row(w, "Format", k.Format)
		if k.URI != "" {
			row(w, "URI", k.URI)
			row(w, "Private key", "in the token; it cannot be read out")
		} else {
			row(w, "Encrypted", yesNo(k.Encrypted))
		}
		if k.Mode != "" {
			row(w, "File mode", k.Mode)
		}
		row(w, "Pin", k.Pin)
		return
	}
	for i, c := range out.Certificates {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s: certificate %d of %d\n", out.Source, i+1, len(out.Certificates))
		row(w, "Subject", c.Subject)
		row(w, "Issuer", c.Issuer)
		row(w, "Serial", c.Serial)
		row(w, "Not before", c.NotBefore.Format(time.RFC3339))
		row(w, "Not after", c.NotAfter.Format(time.RFC3339))
		left := time.Duration(c.SecondsLeft) * time.Second
		switch c.Status {
		case "expired":
			row(w, "Status", "EXPIRED "+formatDuration(-left)+" ago")
		case "not yet valid":
			row(w, "Status", "NOT YET VALID")
		default:
			row(w, "Status", "valid, "+formatDuration(left)+" left")
		}
		if len(c.DNSNames) > 0 {
			row(w, "DNS names", strings.Join(c.DNSNames, ", "))
		}
		if len(c.IPAddresses) > 0 {
			row(w, "IP addresses", strings.Join(c.IPAddresses, ", "))
		}
		row(w, "Public key", c.KeyType)
		row(w, "Signature", c.SignatureAlgorithm)
		bc := "CA:FALSE"
		if c.IsCA {
			bc = "CA:TRUE"
			if c.MaxPathLen != nil {
				bc += fmt.Sprintf(", pathlen:%d", *c.MaxPathLen)
			}
		}
		row(w, "Basic constraints", bc)
		if len(c.KeyUsage) > 0 {
			row(w, "Key usage", strings.Join(c.KeyUsage, ", "))
		}
		if len(c.ExtKeyUsage) > 0 {
			row(w, "Extended key usage", strings.Join(c.ExtKeyUsage, ", "))
		}
		if c.SubjectKeyID != "" {
			row(w, "Subject key ID", c.SubjectKeyID)
		}
		if c.AuthorityKeyID != "" {
			row(w, "Authority key ID", c.AuthorityKeyID)
		}
		var exts []string
		for _, e := range c.Extensions {
			s := e.Name
			if e.Critical {
				s += " (critical)"
			}
			exts = append(exts, s)
		}
		row(w, "Extensions", strings.Join(exts, ", "))
		row(w, "Self-signed", yesNo(c.SelfSigned))
		row(w, "SHA-256 fingerprint", c.Fingerprint)
		row(w, "Pin", c.Pin)
	}
}

func row(w io.Writer, name, value string) {
	fmt.Fprintf(w, "  %-20s %s\n", name+":", value)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func colonHex(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	h := strings.ToUpper(hex.EncodeToString(b))
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

func keyUsageNames(ku x509.KeyUsage) []string {
	names := []string{"digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment",
		"keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"}
	out := []string{}
	for i, n := range names {
		if ku&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

func extKeyUsageNames(c *x509.Certificate) []string {
	names := map[x509.ExtKeyUsage]string{
		x509.ExtKeyUsageAny: "any", x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageClientAuth: "clientAuth",
		x509.ExtKeyUsageCodeSigning: "codeSigning", x509.ExtKeyUsageEmailProtection: "emailProtection",
		x509.ExtKeyUsageTimeStamping: "timeStamping", x509.ExtKeyUsageOCSPSigning: "OCSPSigning",
	}
	out := []string{}
	for _, u := range c.ExtKeyUsage {
		if n, ok := names[u]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("eku(%d)", u))
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		out = append(out, oid.String())
	}
	return out
}

// extName names the extensions RFC 5280 §4.2 defines.
func extName(oid asn1.ObjectIdentifier) string {
	names := map[string]string{
		"2.5.29.14": "subjectKeyIdentifier", "2.5.29.35": "authorityKeyIdentifier",
		"2.5.29.15": "keyUsage", "2.5.29.37": "extKeyUsage", "2.5.29.19": "basicConstraints",
		"2.5.29.17": "subjectAltName", "2.5.29.30": "nameConstraints", "2.5.29.31": "cRLDistributionPoints",
		"2.5.29.32": "certificatePolicies", "1.3.6.1.5.5.7.1.1": "authorityInfoAccess",
		"1.3.6.1.4.1.11129.2.4.2": "signedCertificateTimestamps",
	}
	if n, ok := names[oid.String()]; ok {
		return n
	}
	return oid.String()
}
