package certcmd

import (
	"crypto"
	"crypto/x509"

	"github.com/spacecaptain/spacecaptain/pinning"
)

// pinOfKey returns the pin of a public key as a string, "" if it cannot be
// computed (a key type x509 cannot marshal).
func pinOfKey(pub crypto.PublicKey) string {
	p, err := pinning.PinOfPublicKey(pub)
	if err != nil {
		return ""
	}
	return p.String()
}

func pinOfCert(c *x509.Certificate) string { return pinning.PinOf(c).String() }
