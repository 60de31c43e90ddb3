package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"strings"

	"go.step.sm/crypto/keyutil"
)

// KeyType names a kind of key this package generates. The zero value ("")
// means [KeyECDSAP256], the default: fast handshakes and small certificates,
// accepted by every TLS client that matters.
type KeyType string

// The key types [GenerateKey] makes.
const (
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyECDSAP384 KeyType = "ecdsa-p384"
	KeyRSA2048   KeyType = "rsa-2048"
	KeyRSA3072   KeyType = "rsa-3072"
	KeyRSA4096   KeyType = "rsa-4096"
	KeyEd25519   KeyType = "ed25519"
)

// MaxRSABits is the largest RSA modulus a loaded key may have. It matches
// the limit crypto/tls and crypto/x509 apply to peers' keys (Go 1.24): a
// larger key makes each handshake cost seconds of CPU.
const MaxRSABits = 8192

// KeyTypes lists the key types [GenerateKey] accepts, default first.
func KeyTypes() []KeyType {
	return []KeyType{KeyECDSAP256, KeyECDSAP384, KeyRSA2048, KeyRSA3072, KeyRSA4096, KeyEd25519}
}

// ParseKeyType parses a key type name as [KeyType.String] writes it. It
// also accepts the common spellings "p256", "P-256", "ec", "ecdsa", "rsa"
// (2048 bits), "rsa4096" and so on, in any case.
func ParseKeyType(s string) (KeyType, error) {
	n := strings.NewReplacer("-", "", "_", "", " ", "").Replace(strings.ToLower(strings.TrimSpace(s)))
	switch n {
	case "", "ec", "ecdsa", "p256", "ecdsap256", "prime256v1", "secp256r1":
		return KeyECDSAP256, nil
	case "p384", "ecdsap384", "secp384r1":
		return KeyECDSAP384, nil
	case "rsa", "rsa2048":
		return KeyRSA2048, nil
	case "rsa3072":
		return KeyRSA3072, nil
	case "rsa4096":
		return KeyRSA4096, nil
	case "ed25519", "okp":
		return KeyEd25519, nil
	}
	return "", fmt.Errorf("%w: key type %q (want one of %s)", ErrUnsupportedKey, s, keyTypeList())
}

func keyTypeList() string {
	var names []string
	for _, t := range KeyTypes() {
		names = append(names, string(t))
	}
	return strings.Join(names, ", ")
}

// String returns the canonical name, e.g. "ecdsa-p256"; the zero value
// prints as the default it stands for.
func (t KeyType) String() string {
	if t == "" {
		return string(KeyECDSAP256)
	}
	return string(t)
}

// GenerateKey makes a new private key of type t. RSA-4096 takes a second or
// more; the other types take microseconds.
func GenerateKey(t KeyType) (crypto.Signer, error) {
	var kty, crv string
	var bits int
	switch t {
	case "", KeyECDSAP256:
		kty, crv = "EC", "P-256"
	case KeyECDSAP384:
		kty, crv = "EC", "P-384"
	case KeyRSA2048:
		kty, bits = "RSA", 2048
	case KeyRSA3072:
		kty, bits = "RSA", 3072
	case KeyRSA4096:
		kty, bits = "RSA", 4096
	case KeyEd25519:
		kty, crv = "OKP", "Ed25519"
	default:
		return nil, fmt.Errorf("generating key: %w: key type %q (want one of %s)", ErrUnsupportedKey, string(t), keyTypeList())
	}
	key, err := keyutil.GenerateSigner(kty, crv, bits)
	if err != nil {
		return nil, fmt.Errorf("generating %s key: %w", t, err)
	}
	return key, nil
}

// KeyTypeOf returns the [KeyType] of a public key, so that a replacement
// key can be made of the same kind. Keys this package does not generate
// (P-521, other RSA sizes) return [ErrUnsupportedKey].
func KeyTypeOf(pub crypto.PublicKey) (KeyType, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return KeyECDSAP256, nil
		case elliptic.P384():
			return KeyECDSAP384, nil
		}
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return KeyRSA2048, nil
		case 3072:
			return KeyRSA3072, nil
		case 4096:
			return KeyRSA4096, nil
		}
	case ed25519.PublicKey:
		return KeyEd25519, nil
	}
	return "", fmt.Errorf("%w: %s", ErrUnsupportedKey, describeKey(pub))
}

// describeKey returns a short human description of a public key, such as
// "ECDSA P-256", "RSA 4096" or "Ed25519".
func describeKey(pub crypto.PublicKey) string {
	alg, bits := keyAlgorithm(pub)
	switch alg {
	case "ECDSA":
		return "ECDSA " + curveName(pub.(*ecdsa.PublicKey).Curve)
	case "RSA":
		return fmt.Sprintf("RSA %d", bits)
	case "":
		return fmt.Sprintf("unknown key %T", pub)
	}
	return alg
}

// keyAlgorithm returns a public key's algorithm ("ECDSA", "RSA", "Ed25519")
// and its size in bits (the curve size for ECDSA, the modulus for RSA, 256
// for Ed25519). An unknown key returns "" and 0.
func keyAlgorithm(pub crypto.PublicKey) (string, int) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA", k.Curve.Params().BitSize
	case *rsa.PublicKey:
		return "RSA", k.N.BitLen()
	case ed25519.PublicKey:
		return "Ed25519", 256
	}
	return "", 0
}

func curveName(c elliptic.Curve) string {
	return c.Params().Name
}

// samePublicKey reports whether two public keys are the same key.
func samePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// checkServingKey refuses keys crypto/tls cannot or should not serve with.
func checkServingKey(key crypto.Signer) error {
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n > MaxRSABits {
			return fmt.Errorf("%w: %d bits, the maximum is %d", ErrKeyTooLarge, n, MaxRSABits)
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return fmt.Errorf("%w: %T", ErrUnsupportedKey, k)
	}
	return nil
}
