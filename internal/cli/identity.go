package cli

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// SelfSignedIdentityValidity is how long the certificate made in memory
// around an identity key is valid. crypto/tls refuses to resume a session
// past the client certificate's NotAfter, and sc-server's session tickets
// live 7 days: a month covers any session of a run.
const SelfSignedIdentityValidity = 30 * 24 * time.Hour

// IdentityCertPath returns the certificate that goes with the identity key
// at keyPath, when one exists: KEY.crt, or for a KEY ending in .key the
// same name ending in .crt (what sc-cert create --client writes).
func IdentityCertPath(keyPath string) string {
	cands := []string{keyPath + ".crt"}
	if base, ok := strings.CutSuffix(keyPath, ".key"); ok {
		cands = append(cands, base+".crt")
	}
	for _, c := range cands {
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	return ""
}

// LoadIdentity reads the identity key at path and its certificate
// ([IdentityCertPath]), or makes a self-signed certificate for the key in
// memory: the server knows a player by the pin of the key, and the
// certificate around it matters only to a server that admits by CA. now
// is the clock of that certificate; nil means time.Now.
func LoadIdentity(path string, now func() time.Time) (*tls.Certificate, error) {
	k, err := pki.ReadKeyFile(path, pki.KeyOptions{Passphrase: (&Passphrase{}).Source("the identity key " + path), RequirePrivateFile: true})
	if err != nil {
		return nil, WithHint(fmt.Errorf("reading the identity %s: %w", path, err), "make one with: sc-client identity new (or --identity none to present none)")
	}
	var chain []*x509.Certificate
	if cp := IdentityCertPath(path); cp != "" {
		chain, err = pki.ReadCertificatesFile(cp)
		if err != nil {
			return nil, fmt.Errorf("reading the identity's certificate %s: %w", cp, err)
		}
		if !pinning.PinOf(chain[0]).Equal(PinOfKey(k.Signer)) {
			return nil, WithHint(fmt.Errorf("the certificate %s is not for the identity key %s", cp, path), "remove or replace the certificate; the key alone is presented in a certificate made for it")
		}
	} else {
		cert, err := pki.CreateCertificate(k.Signer.Public(), pki.CertOptions{
			Client: true, CommonName: "sc-client", Validity: SelfSignedIdentityValidity, IssuerKey: k.Signer, Now: now,
		})
		if err != nil {
			return nil, fmt.Errorf("making a certificate for the identity %s: %w", path, err)
		}
		chain = []*x509.Certificate{cert}
	}
	c := &tls.Certificate{PrivateKey: k.Signer, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

// PinOfKey returns the pin of k's public key (the zero pin for a key type
// pinning does not know, which no key pki makes is).
func PinOfKey(k crypto.Signer) pinning.Pin {
	p, _ := pinning.PinOfPublicKey(k.Public())
	return p
}
