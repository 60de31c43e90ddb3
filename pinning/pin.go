package pinning

import (
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/spacecaptain/spacecaptain/internal/trustfile"
)

// pinPrefix is the scheme prefix of the textual pin form. curl's
// --pinnedpubkey and HPKP's pin-sha256 (RFC 7469) use the same digest.
const pinPrefix = "sha256//"

// Pin identifies a public key: the SHA-256 digest of its DER-encoded
// SubjectPublicKeyInfo. Pins name keys, not certificates, so a certificate
// re-issued on the same key keeps its pin.
//
// This is deliberately not go.step.sm/crypto's keyutil.Fingerprint, which
// hashes only the public key's BIT STRING and so differs from the pin curl,
// HPKP and OkHttp compute.
//
// The zero Pin matches nothing; compare pins with [Pin.Equal], which runs in
// constant time.
type Pin struct {
	sum [sha256.Size]byte
}

// PinOfSPKI returns the pin of a DER-encoded SubjectPublicKeyInfo, such as
// [x509.Certificate.RawSubjectPublicKeyInfo].
func PinOfSPKI(spkiDER []byte) Pin {
	return Pin{sum: sha256.Sum256(spkiDER)}
}

// PinOf returns the pin of a certificate's public key.
func PinOf(cert *x509.Certificate) Pin {
	return PinOfSPKI(cert.RawSubjectPublicKeyInfo)
}

// PinOfPublicKey returns the pin of a public key (*ecdsa.PublicKey,
// *rsa.PublicKey, ed25519.PublicKey). A private key's pin is the pin of its
// Public() key.
func PinOfPublicKey(pub crypto.PublicKey) (Pin, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return Pin{}, fmt.Errorf("computing pin: %w", err)
	}
	return PinOfSPKI(der), nil
}

// ParsePin parses a pin written as "sha256//" followed by standard base64 (the
// form [Pin.String] produces, and curl's), as bare base64, or as 64 hex digits
// with or without colons. Surrounding white space is ignored.
func ParsePin(s string) (Pin, error) {
	s = strings.TrimSpace(s)
	var p Pin
	switch {
	case strings.HasPrefix(strings.ToLower(s), pinPrefix):
		if err := p.setBase64(s[len(pinPrefix):]); err != nil {
			return Pin{}, fmt.Errorf("parsing pin %q: %w", s, err)
		}
	case hasOtherAlgorithm(s):
		// A bare base64 digest may hold "//" too ("AAAAAAAA//AAA…="):
		// it is one if it decodes to a whole SHA-256 digest.
		if p.setBase64(s) == nil {
			break
		}
		alg, _, _ := strings.Cut(s, "//")
		return Pin{}, fmt.Errorf("parsing pin %q: only sha256// pins are supported (SHA-256 of the key's SubjectPublicKeyInfo, as curl --pinnedpubkey and HPKP use), not %s//", s, alg)
	case looksHex(s):
		b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
		if err != nil || len(b) != sha256.Size {
			return Pin{}, fmt.Errorf("parsing pin %q: want 64 hex digits (32 bytes), with or without colons", s)
		}
		copy(p.sum[:], b)
	default:
		if err := p.setBase64(s); err != nil {
			return Pin{}, fmt.Errorf("parsing pin %q: want sha256//BASE64 (as curl --pinnedpubkey) or hex: %w", s, err)
		}
	}
	if p.IsZero() {
		// An all-zero digest is the zero Pin, which matches nothing: accepting
		// it would give a pin set that looks configured and trusts no one, or
		// a store entry that can never be satisfied. No key hashes to it.
		return Pin{}, fmt.Errorf("parsing pin %q: the digest is all zeros, which is a placeholder, not the pin of a key", s)
	}
	return p, nil
}

func (p *Pin) setBase64(s string) error {
	// Accept the unpadded form too: people paste pins from places that
	// strip the trailing "=".
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return fmt.Errorf("invalid base64")
	}
	if len(b) != sha256.Size {
		return fmt.Errorf("decodes to %d bytes, want %d (a SHA-256 digest)", len(b), sha256.Size)
	}
	copy(p.sum[:], b)
	return nil
}

// hasOtherAlgorithm reports whether s is written ALG//VALUE with an
// algorithm other than sha256, such as sha1// or sha384//.
func hasOtherAlgorithm(s string) bool {
	alg, _, ok := strings.Cut(s, "//")
	if !ok || alg == "" || len(alg) > 16 {
		return false
	}
	for _, c := range alg {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// looksHex reports whether s is plausibly a hex pin: only hex digits and
// colons, and long enough that it cannot be base64 of 32 bytes (44 chars).
func looksHex(s string) bool {
	if len(s) < 64 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F', c == ':':
		default:
			return false
		}
	}
	return true
}

// String returns the pin as "sha256//" + standard base64, the form curl's
// --pinnedpubkey accepts.
func (p Pin) String() string {
	return pinPrefix + p.Base64()
}

// Base64 returns the digest in standard, padded base64 (HPKP's pin-sha256).
func (p Pin) Base64() string {
	return base64.StdEncoding.EncodeToString(p.sum[:])
}

// Hex returns the digest as lowercase hex without separators.
func (p Pin) Hex() string {
	return hex.EncodeToString(p.sum[:])
}

// Bytes returns a copy of the 32-byte digest.
func (p Pin) Bytes() []byte {
	b := p.sum
	return b[:]
}

// IsZero reports whether p is the zero Pin, which names no key.
func (p Pin) IsZero() bool {
	return p == Pin{}
}

// Equal reports whether p and q name the same key, in constant time. The zero
// Pin equals nothing, not even itself, so an unset pin can never match.
func (p Pin) Equal(q Pin) bool {
	if p.IsZero() || q.IsZero() {
		return false
	}
	return subtle.ConstantTimeCompare(p.sum[:], q.sum[:]) == 1
}

// IsFingerprintOf reports whether p holds the SHA-256 digest of cert's
// whole DER encoding — its certificate fingerprint, as openssl x509
// -fingerprint -sha256 prints it — rather than of its key. Such a value
// names one certificate and changes at every re-issue; it is not a pin.
func (p Pin) IsFingerprintOf(cert *x509.Certificate) bool {
	if p.IsZero() || cert == nil {
		return false
	}
	sum := sha256.Sum256(cert.Raw)
	return subtle.ConstantTimeCompare(p.sum[:], sum[:]) == 1
}

// MarshalText implements [encoding.TextMarshaler] with the [Pin.String] form.
func (p Pin) MarshalText() ([]byte, error) {
	return []byte(p.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParsePin].
func (p *Pin) UnmarshalText(text []byte) error {
	q, err := ParsePin(string(text))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// ReadPinFile returns the pin of the key in a PEM file; see [ParsePinPEM].
// Only a regular file of at most 1 MiB is read ([ErrNotRegularFile],
// [ErrFileTooLarge]).
func ReadPinFile(path string) (Pin, error) {
	data, _, err := trustfile.Read(path, trustfile.PinFile)
	if err != nil {
		return Pin{}, fmt.Errorf("reading pin from %q: %w", path, err)
	}
	p, err := ParsePinPEM(data)
	if err != nil {
		return Pin{}, fmt.Errorf("reading pin from %q: %w", path, err)
	}
	return p, nil
}

// ParsePinPEM returns the pin of the first certificate, public key or
// unencrypted private key in PEM data. Encrypted private keys are refused
// with a hint: the certificate or the public key give the same pin without
// a passphrase.
func ParsePinPEM(data []byte) (Pin, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return Pin{}, fmt.Errorf("no certificate, public key or private key PEM block found")
		}
		if len(block.Headers) > 0 && block.Headers["Proc-Type"] != "" {
			return Pin{}, fmt.Errorf("the private key is encrypted: pin the certificate or the public key instead")
		}
		switch block.Type {
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return Pin{}, fmt.Errorf("parsing certificate: %w", err)
			}
			return PinOf(cert), nil
		case "PUBLIC KEY":
			if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
				return Pin{}, fmt.Errorf("parsing public key: %w", err)
			}
			return PinOfSPKI(block.Bytes), nil
		case "RSA PUBLIC KEY":
			pub, err := x509.ParsePKCS1PublicKey(block.Bytes)
			if err != nil {
				return Pin{}, fmt.Errorf("parsing RSA public key: %w", err)
			}
			return PinOfPublicKey(pub)
		case "ENCRYPTED PRIVATE KEY":
			return Pin{}, fmt.Errorf("the private key is encrypted: pin the certificate or the public key instead")
		case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY":
			signer, err := parsePrivateKey(block)
			if err != nil {
				return Pin{}, err
			}
			return PinOfPublicKey(signer.Public())
		}
	}
}

func parsePrivateKey(block *pem.Block) (crypto.Signer, error) {
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	}
	if err != nil {
		// The parser's error text never includes key bytes.
		return nil, fmt.Errorf("parsing private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parsing private key: unsupported key type %T", key)
	}
	return signer, nil
}
