package pki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"time"

	"go.step.sm/crypto/x509util"
)

// Default validity periods. A server certificate is short-lived because it
// is renewed in place (same key, same pin) long before it expires; a CA
// lives long because CA-file clients must be given every new one by hand.
const (
	defaultLeafValidity = 90 * 24 * time.Hour
	defaultCAValidity   = 10 * 365 * 24 * time.Hour

	// backdate is how far before "now" a new certificate becomes valid, so
	// that a client whose clock is a little behind accepts it at once.
	backdate = 5 * time.Minute
)

// Default subject names.
const (
	defaultCAName = "Space Captain local CA"
)

// CertOptions describes a certificate to make. The zero value, given an
// IssuerKey, makes a self-signed server certificate for localhost valid 90
// days.
type CertOptions struct {
	// CommonName is the subject CN, for people only: clients match host
	// names against the SANs. Default: the first DNS name for a server
	// certificate, "Space Captain local CA (HOST)" for a CA.
	CommonName string

	// RawSubject, when set, is the exact DER subject to use, as taken from
	// another certificate's RawSubject when re-issuing it; it overrides
	// CommonName.
	RawSubject []byte

	// DNSNames and IPAddresses are the subject alternative names of a
	// server certificate. When both are empty the defaults are
	// "localhost", 127.0.0.1, ::1 and this machine's host name (when it is
	// a valid DNS name). Ignored for a CA.
	DNSNames    []string
	IPAddresses []net.IP

	// IsCA makes a CA certificate (CA:TRUE, path length 0, keyCertSign and
	// cRLSign) instead of a server certificate (CA:FALSE, digitalSignature,
	// serverAuth). Default false.
	IsCA bool

	// Client makes a client certificate, a player's identity: CA:FALSE,
	// digitalSignature and the clientAuth extended key usage only (never
	// serverAuth, so it cannot serve), CommonName as its subject (required)
	// and DNSNames and IPAddresses as given, with no default SANs. Default
	// false. It can't be combined with IsCA.
	Client bool

	// Validity is how long the certificate is valid from now. Default 90
	// days, or 10 years for a CA. Ignored when NotAfter is set.
	Validity time.Duration

	// NotBefore and NotAfter set the validity period explicitly. A zero
	// NotBefore means five minutes ago, so that a client whose clock is a
	// little behind accepts the certificate at once; a zero NotAfter means
	// now + Validity.
	NotBefore, NotAfter time.Time

	// Issuer is the CA certificate that signs; nil means self-signed.
	Issuer *x509.Certificate

	// IssuerKey signs the certificate: the Issuer's key, or the
	// certificate's own key when self-signed. Required.
	IssuerKey crypto.Signer

	// Now returns the current time. Nil means time.Now.
	Now func() time.Time

	// Rand is the source of serial numbers. Nil means crypto/rand.Reader.
	Rand io.Reader
}

func (o *CertOptions) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// CreateCertificate makes a certificate for pub as opts describe and returns
// it parsed. Every certificate gets a 128-bit random serial, a Subject Key
// Identifier, and an Authority Key Identifier equal to the issuer's SKI
// (its own on a self-signed one) — RFC 5280 §4.2.1.1–2, and what zlint
// checks. The result passes zlint v3.7.3 with no error or warning under
// RFC5280, RFC5480, RFC3279 and RFC8813 for every [KeyType].
//
// It refuses a server certificate that would outlive its issuer (clients
// would reject it from then on), an issuer that is not a CA, an IssuerKey
// that does not match the issuer or, when self-signed, pub.
func CreateCertificate(pub crypto.PublicKey, opts CertOptions) (*x509.Certificate, error) {
	if opts.IssuerKey == nil {
		return nil, errors.New("creating certificate: no signing key given")
	}
	if opts.Client && (opts.IsCA || opts.CommonName == "") {
		return nil, errors.New("creating certificate: a client certificate needs a name (CommonName) and can't be a CA")
	}
	if _, err := KeyTypeOf(pub); err != nil {
		if alg, _ := keyAlgorithm(pub); alg == "" {
			return nil, fmt.Errorf("creating certificate: %w", err)
		}
	}
	template := &x509.Certificate{PublicKey: pub}
	var err error
	template.SerialNumber, err = randomSerial(opts.Rand)
	if err != nil {
		return nil, err
	}

	// Validity.
	now := opts.now()
	template.NotBefore = opts.NotBefore
	if template.NotBefore.IsZero() {
		template.NotBefore = now.Add(-backdate)
	}
	template.NotAfter = opts.NotAfter
	if template.NotAfter.IsZero() {
		validity := opts.Validity
		if validity <= 0 {
			validity = defaultLeafValidity
			if opts.IsCA {
				validity = defaultCAValidity
			}
		}
		template.NotAfter = now.Add(validity)
	}
	// X.509 times have second precision (RFC 5280 §4.1.2.5).
	template.NotBefore = template.NotBefore.UTC().Truncate(time.Second)
	template.NotAfter = template.NotAfter.UTC().Truncate(time.Second)
	if !template.NotAfter.After(template.NotBefore) {
		return nil, fmt.Errorf("creating certificate: not after (%s) must be later than not before (%s)",
			template.NotAfter.Format(time.RFC3339), template.NotBefore.Format(time.RFC3339))
	}

	// Subject and extensions.
	if opts.IsCA {
		cn := opts.CommonName
		if cn == "" {
			cn = defaultCAName
			if h := hostname(); h != "" {
				cn += " (" + h + ")"
			}
		}
		template.Subject = pkix.Name{CommonName: truncate(cn, 64)}
	} else {
		dns, ips := opts.DNSNames, opts.IPAddresses
		if len(dns) == 0 && len(ips) == 0 && !opts.Client {
			dns, ips = defaultSANs()
		}
		for _, d := range dns {
			if err := checkDNSName(d); err != nil {
				return nil, fmt.Errorf("creating certificate: %w", err)
			}
		}
		cn := opts.CommonName
		if cn == "" {
			if len(dns) > 0 {
				cn = dns[0]
			} else {
				cn = ips[0].String()
			}
		}
		template.Subject = pkix.Name{CommonName: truncate(cn, 64)}
		template.DNSNames = dns
		template.IPAddresses = ips
	}

	// x509util fills in the SANs the way smallstep's CA does and gives us
	// its leaf defaults, which we then narrow: we add no clientAuth and,
	// for RSA, no keyEncipherment — only ECDHE suites are served, so the
	// key never decrypts anything (RFC 5246 §7.4.2; zlint accepts either).
	sc, err := x509util.NewCertificateFromX509(template)
	if err != nil {
		return nil, fmt.Errorf("creating certificate: %w", err)
	}
	tmpl := sc.GetCertificate()
	tmpl.SerialNumber = template.SerialNumber
	if len(opts.RawSubject) > 0 {
		tmpl.RawSubject = opts.RawSubject
	}
	tmpl.NotBefore, tmpl.NotAfter = template.NotBefore, template.NotAfter
	tmpl.BasicConstraintsValid = true
	if opts.IsCA {
		tmpl.IsCA = true
		tmpl.MaxPathLen = 0
		tmpl.MaxPathLenZero = true // a local CA issues server certificates only
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		tmpl.ExtKeyUsage = nil
		tmpl.DNSNames, tmpl.IPAddresses = nil, nil
	} else {
		tmpl.IsCA = false
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		if opts.Client {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
	}
	tmpl.SubjectKeyId, err = x509util.GenerateSubjectKeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("creating certificate: %w", err)
	}

	parent := tmpl
	if opts.Issuer != nil {
		if !opts.Issuer.IsCA || opts.Issuer.KeyUsage&x509.KeyUsageCertSign == 0 {
			return nil, fmt.Errorf("creating certificate: %w: %q is not a CA certificate", ErrNotIssuer, opts.Issuer.Subject.CommonName)
		}
		if !samePublicKey(opts.Issuer.PublicKey, opts.IssuerKey.Public()) {
			return nil, fmt.Errorf("creating certificate: %w: the issuer key does not match the issuer certificate %q", ErrNotIssuer, opts.Issuer.Subject.CommonName)
		}
		if tmpl.NotAfter.After(opts.Issuer.NotAfter) {
			return nil, fmt.Errorf("creating certificate: it would outlive its issuer %q, which expires at %s: renew the CA or ask for a shorter validity",
				opts.Issuer.Subject.CommonName, opts.Issuer.NotAfter.UTC().Format(time.RFC3339))
		}
		parent = opts.Issuer
		tmpl.AuthorityKeyId = opts.Issuer.SubjectKeyId
		if len(tmpl.AuthorityKeyId) == 0 {
			tmpl.AuthorityKeyId, err = x509util.GenerateSubjectKeyID(opts.Issuer.PublicKey)
			if err != nil {
				return nil, fmt.Errorf("creating certificate: %w", err)
			}
		}
	} else {
		if !samePublicKey(pub, opts.IssuerKey.Public()) {
			return nil, errors.New("creating certificate: a self-signed certificate must be signed by its own key")
		}
		// Go copies the AKI from the parent only when issuer and subject
		// differ, so a self-signed certificate gets none unless we set it.
		tmpl.AuthorityKeyId = tmpl.SubjectKeyId
	}

	cert, err := x509util.CreateCertificate(tmpl, parent, pub, opts.IssuerKey)
	if err != nil {
		return nil, fmt.Errorf("creating certificate: %w", errors.Unwrap(err))
	}
	return cert, nil
}

// randomSerial returns a positive serial with 126 random bits whose DER
// encoding is always exactly 16 octets: the top bit is clear, so no 0x00
// sign octet is prepended, and the next bit is set, so the value never
// shrinks to fewer octets. RFC 5280 §4.1.2.2 allows up to 20; CA/Browser
// Forum practice asks for at least 64 random bits.
func randomSerial(r io.Reader) (*big.Int, error) {
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	b[0] = b[0]&0x3f | 0x40
	return new(big.Int).SetBytes(b), nil
}

// defaultSANs returns the names a server certificate gets when none are
// given: "localhost", this machine's host name when it is a valid DNS name,
// 127.0.0.1 and ::1.
func defaultSANs() (dnsNames []string, ips []net.IP) {
	dnsNames = []string{"localhost"}
	if h := hostname(); h != "" && !strings.EqualFold(h, "localhost") {
		dnsNames = append(dnsNames, h)
	}
	return dnsNames, []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || checkDNSName(h) != nil {
		return ""
	}
	return strings.ToLower(h)
}

// checkDNSName accepts host names (RFC 1123 labels) and a leading "*."
// wildcard; IP addresses belong in IPAddresses.
func checkDNSName(name string) error {
	bad := func(why string) error { return fmt.Errorf("invalid DNS name %q: %s", name, why) }
	if net.ParseIP(name) != nil {
		return bad("an IP address; give it as an IP SAN")
	}
	n := strings.TrimPrefix(name, "*.")
	if n == "" || len(n) > 253 {
		return bad("empty or longer than 253 characters")
	}
	for _, label := range strings.Split(strings.TrimSuffix(n, "."), ".") {
		if label == "" || len(label) > 63 {
			return bad("empty label or label longer than 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return bad("a label starts or ends with '-'")
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return bad("only letters, digits, '-' and '.' are allowed")
			}
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Fingerprint returns the SHA-256 digest of the certificate's DER in
// uppercase colon-separated hex, exactly as `openssl x509 -fingerprint
// -sha256` prints it after "sha256 Fingerprint=". It identifies one
// certificate; a pin (package pinning) identifies its key.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return colonHex(sum[:])
}

func colonHex(b []byte) string {
	h := strings.ToUpper(hex.EncodeToString(b))
	var sb strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}

// SerialHex returns a serial number as openssl prints it in `x509 -text`:
// colon-separated lowercase hex octets.
func SerialHex(serial *big.Int) string {
	return strings.ToLower(colonHex(serial.Bytes()))
}

// IsSelfSigned reports whether cert is signed by its own key (its issuer
// and subject are equal and its signature verifies with its public key).
func IsSelfSigned(cert *x509.Certificate) bool {
	// Not CheckSignatureFrom: it insists the parent be a CA, and a
	// self-signed server certificate is not one.
	return bytes.Equal(cert.RawIssuer, cert.RawSubject) &&
		cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) == nil
}
