package cli

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
)

// DescribeKey returns how the commands name a public key's kind for
// people: "ECDSA P-256", "RSA 4096", "Ed25519", and its size in bits (the
// curve's for ECDSA, the modulus for RSA, 256 for Ed25519); an unknown key
// is "unknown key T" and 0 bits.
func DescribeKey(pub crypto.PublicKey) (desc string, bits int) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name, k.Curve.Params().BitSize
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen()), k.N.BitLen()
	case ed25519.PublicKey:
		return "Ed25519", 256
	}
	return fmt.Sprintf("unknown key %T", pub), 0
}
