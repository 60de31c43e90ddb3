package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"

	"github.com/spacecaptain/spacecaptain/internal/atomicfile"
	"github.com/spacecaptain/spacecaptain/internal/trustfile"
	"go.step.sm/crypto/pemutil"
)

// Modes of the files this package writes. Keys are private to their owner
// from the moment they are created (atomicfile creates its temporary file
// 0600); certificates are public.
const (
	keyFileMode  fs.FileMode = 0o600
	certFileMode fs.FileMode = 0o644
)

// PEM block types.
const (
	pemCertificate       = "CERTIFICATE"
	pemPrivateKey        = "PRIVATE KEY"           // PKCS#8, RFC 5208 / RFC 7468
	pemEncryptedKey      = "ENCRYPTED PRIVATE KEY" // PKCS#8 encrypted, RFC 7468 §11
	pemECPrivateKey      = "EC PRIVATE KEY"        // SEC 1, RFC 5915 (legacy)
	pemRSAPrivateKey     = "RSA PRIVATE KEY"       // PKCS#1, RFC 8017 (legacy)
	pemECParameters      = "EC PARAMETERS"         // openssl ecparam -genkey writes it before the key
	pemLegacyEncryptedHd = "Proc-Type"             // RFC 1421 encryption header (legacy)
)

// The key formats ReadKeyFile recognises, as [Key.Format] names them. Only
// the PKCS#8 ones are ever written.
const (
	formatPKCS8           = "PKCS#8"
	formatPKCS8Encrypted  = "PKCS#8 encrypted (PBES2)"
	formatSEC1            = "SEC 1 (legacy EC)"
	formatPKCS1           = "PKCS#1 (legacy RSA)"
	formatLegacyEncrypted = "legacy encrypted PEM (Proc-Type: 4,ENCRYPTED)"

	// formatToken is a key kept in a PKCS#11 token, named by a pkcs11:
	// URI or by a file holding one (see [ResolveKeyPath]).
	formatToken = "PKCS#11 token"
)

// KeyOptions controls how a private key is read. The zero value reads
// unencrypted keys and fails on encrypted ones with [ErrPassphraseRequired].
type KeyOptions struct {
	// Passphrase returns the passphrase of an encrypted key. It is called
	// only when the key is encrypted, at most once per key, so a terminal
	// prompt behind it appears only when needed. Nil means encrypted keys
	// fail with [ErrPassphraseRequired].
	Passphrase func() ([]byte, error)

	// RequirePrivateFile makes [ReadKeyFile] refuse, as OpenSSH's
	// StrictModes refuses such identity files:
	//   - a key file that group or others may read or write, with
	//     [ErrKeyFilePermissions]. The one exception is PostgreSQL's: a
	//     root-owned file may be group-readable (mode 0640 or 0440) for a
	//     server that does not run as root, which is how Kubernetes mounts
	//     a Secret for a pod with an fsGroup;
	//   - a key file owned by a user other than the process's or root, with
	//     [ErrFileOwner] (as root, only root's files): that user could have
	//     planted it;
	//   - a key in a directory, or reached through directories, that group
	//     or others may write, with [ErrFileWritable], unless the directory
	//     is sticky and owned by root (Kubernetes' secret volumes are).
	// Set it when loading a key to serve or sign with. The owner and mode
	// checks are skipped on Windows, whose ACLs have no such mode bits.
	// Default false. Whatever it says, only a regular file of at most
	// 1 MiB is read ([ErrNotRegularFile], [ErrFileTooLarge]).
	RequirePrivateFile bool

	// Tokens opens keys kept in PKCS#11 tokens: a key path that is a
	// pkcs11: URI, or a key file (such as server.uri) that holds one.
	// Nil means such keys fail with [ErrKeyUnavailable].
	Tokens *Tokens
}

// Key is a private key read from PEM, with how it was stored.
type Key struct {
	// Signer is the key.
	Signer crypto.Signer
	// Format says how it was stored, for people: "PKCS#8", "PKCS#8
	// encrypted (PBES2)", "SEC 1 (legacy EC)", "PKCS#1 (legacy RSA)" or
	// "legacy encrypted PEM (Proc-Type: 4,ENCRYPTED)". This package writes
	// only the first two; rewrite a legacy key with [WriteKeyFile].
	Format string
	// Encrypted is set when the key was encrypted with a passphrase.
	Encrypted bool
	// Mode is the file's permission bits when read from a file, else zero.
	Mode fs.FileMode
	// URI names the key when it is kept in a PKCS#11 token (Format is
	// [formatToken]), any pin-value redacted; else "".
	URI string
}

// WriteOptions controls how [WriteKeyFile] and [WriteCertificatesFile] write.
// The zero value writes an unencrypted file and refuses to replace an
// existing one.
type WriteOptions struct {
	// Passphrase, when non-empty, encrypts a key as PKCS#8 with PBES2
	// (PBKDF2-HMAC-SHA256, AES-256-CBC; RFC 8018), which OpenSSL 1.1+ and
	// every current tool reads. The legacy Proc-Type encryption is never
	// written: its key derivation is a single MD5. Ignored for certificates.
	Passphrase []byte

	// Overwrite allows replacing an existing file (atomically). Default
	// false: an existing file is left alone and the write fails with an
	// error matching [ErrExists].
	Overwrite bool
}

// decodePEM splits data into PEM blocks, strictly: explanatory text before
// and between blocks is allowed (RFC 7468 §2; openssl x509 -text and CA
// bundles write it), but a block that does not decode, or anything but
// white space after the last block, is an [ErrMalformedPEM] naming the
// line. encoding/pem alone would silently skip a damaged block and ignore
// trailing garbage.
func decodePEM(data []byte) ([]*pem.Block, error) {
	var blocks []*pem.Block
	begin := []byte("-----BEGIN ")
	all := data
	line := func(rest []byte) int { return 1 + bytes.Count(all[:len(all)-len(rest)], []byte("\n")) }
	for {
		i := bytes.Index(data, begin)
		if i < 0 {
			if len(blocks) > 0 && len(bytes.TrimSpace(data)) > 0 {
				trimmed := bytes.TrimLeft(data, " \t\r\n")
				return nil, fmt.Errorf("%w: unexpected text after the last PEM block (line %d)", ErrMalformedPEM, line(trimmed))
			}
			return blocks, nil
		}
		block, rest := pem.Decode(data[i:])
		consumed := len(data[i:]) - len(rest)
		// pem.Decode skips a damaged block and returns the next one: make
		// sure the block it returned starts where we found BEGIN.
		if block == nil || bytes.Contains(data[i+1:i+consumed], begin) {
			return nil, fmt.Errorf("%w: damaged or truncated PEM block at line %d", ErrMalformedPEM, line(data[i:]))
		}
		blocks = append(blocks, block)
		data = rest
	}
}

// ParseCertificatesPEM parses one or more PEM certificates, leaf first as
// a chain file lists them. Anything else in the data is an error: a private
// key (with the hint that certificate and key paths may be swapped), a
// damaged block, or text after the last block ([ErrMalformedPEM]). No
// certificate at all is [ErrNoCertificate].
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	blocks, err := decodePEM(data)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for _, b := range blocks {
		switch {
		case b.Type == pemCertificate:
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parsing certificate %d: %w", len(certs)+1, err)
			}
			certs = append(certs, c)
		case isPrivateKeyBlock(b) || b.Type == pemECParameters:
			return nil, fmt.Errorf("%w: found a private key (%s) where certificates were expected: the certificate and key paths may be swapped", ErrNoCertificate, b.Type)
		default:
			return nil, fmt.Errorf("%w: unexpected %q block among certificates", ErrMalformedPEM, b.Type)
		}
	}
	if len(certs) == 0 {
		if looksDER(data) {
			return nil, fmt.Errorf("%w: the data looks like binary DER, not PEM (convert it with: openssl x509 -inform der -in FILE -out FILE.pem)", ErrNoCertificate)
		}
		return nil, fmt.Errorf("%w: no CERTIFICATE PEM block", ErrNoCertificate)
	}
	return certs, nil
}

func looksDER(data []byte) bool {
	return len(data) > 1 && data[0] == 0x30 && !bytes.Contains(data, []byte("-----"))
}

func isPrivateKeyBlock(b *pem.Block) bool {
	switch b.Type {
	case pemPrivateKey, pemEncryptedKey, pemECPrivateKey, pemRSAPrivateKey, "OPENSSH PRIVATE KEY":
		return true
	}
	return false
}

// EncodeCertificatesPEM returns certificates as concatenated PEM blocks.
func EncodeCertificatesPEM(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		// Serialize of a certificate cannot fail; pem.Encode to a Buffer
		// neither.
		_ = pem.Encode(&buf, &pem.Block{Type: pemCertificate, Bytes: c.Raw})
	}
	return buf.Bytes()
}

// ParseKeyPEM parses a private key in PEM: PKCS#8 (plain or encrypted with
// PBES2) or the legacy SEC 1 "EC PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY" and
// "Proc-Type: 4,ENCRYPTED" forms. An "EC PARAMETERS" block before the key
// (as openssl ecparam -genkey writes) is skipped.
//
// Errors: [ErrNoKey] (with "paths may be swapped" when a certificate is
// found instead), [ErrMalformedPEM], [ErrPassphraseRequired],
// [ErrIncorrectPassphrase], [ErrKeyTooLarge] for RSA keys over
// [MaxRSABits] (checked before any expensive key validation), and
// [ErrUnsupportedKey].
func ParseKeyPEM(data []byte, opts KeyOptions) (*Key, error) {
	blocks, err := decodePEM(data)
	if err != nil {
		return nil, err
	}
	var keyBlock *pem.Block
	sawCert := false
	for _, b := range blocks {
		switch {
		case b.Type == pemECParameters:
		case b.Type == pemCertificate:
			sawCert = true
		case b.Type == "OPENSSH PRIVATE KEY":
			return nil, fmt.Errorf("%w: an OpenSSH key, not a TLS key (convert it with: ssh-keygen -p -m PKCS8 -f FILE)", ErrUnsupportedKey)
		case isPrivateKeyBlock(b):
			if keyBlock != nil {
				return nil, fmt.Errorf("%w: more than one private key", ErrMalformedPEM)
			}
			keyBlock = b
		case b.Type == "PUBLIC KEY" || b.Type == "RSA PUBLIC KEY":
			return nil, fmt.Errorf("%w: found a public key, not a private key", ErrNoKey)
		default:
			return nil, fmt.Errorf("%w: unexpected %q block in a key file", ErrMalformedPEM, b.Type)
		}
	}
	if keyBlock == nil {
		if sawCert {
			return nil, fmt.Errorf("%w: found a certificate where a private key was expected: the certificate and key paths may be swapped", ErrNoKey)
		}
		return nil, fmt.Errorf("%w: no PRIVATE KEY PEM block", ErrNoKey)
	}
	if sawCert {
		return nil, fmt.Errorf("%w: the key file also holds a certificate; keep certificates and keys in separate files", ErrMalformedPEM)
	}
	return parseKeyBlock(keyBlock, opts)
}

func parseKeyBlock(b *pem.Block, opts KeyOptions) (*Key, error) {
	k := &Key{}
	switch b.Type {
	case pemPrivateKey:
		k.Format = formatPKCS8
	case pemECPrivateKey:
		k.Format = formatSEC1
	case pemRSAPrivateKey:
		k.Format = formatPKCS1
	case pemEncryptedKey:
		k.Format = formatPKCS8Encrypted
	}
	der := b.Bytes
	if b.Type == pemEncryptedKey || b.Headers[pemLegacyEncryptedHd] != "" {
		if b.Type != pemEncryptedKey {
			k.Format = formatLegacyEncrypted
		}
		k.Encrypted = true
		if opts.Passphrase == nil {
			return nil, ErrPassphraseRequired
		}
		pass, err := opts.Passphrase()
		if err != nil {
			return nil, fmt.Errorf("reading passphrase: %w", err)
		}
		der, err = pemutil.DecryptPEMBlock(b, pass)
		if err != nil {
			if errors.Is(err, x509.IncorrectPasswordError) {
				return nil, ErrIncorrectPassphrase
			}
			return nil, fmt.Errorf("decrypting key: %w", err)
		}
	}
	if bits, ok := rsaModulusBits(der, b.Type == pemRSAPrivateKey); ok && bits > MaxRSABits {
		return nil, fmt.Errorf("%w: %d bits, the maximum is %d", ErrKeyTooLarge, bits, MaxRSABits)
	}
	typ := b.Type
	if typ == pemEncryptedKey {
		typ = pemPrivateKey
	}
	// pemutil.Parse does the format dispatch; we have already decrypted,
	// so it never reaches its global prompt.
	parsed, err := pemutil.Parse(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), pemutil.WithFilename("key"))
	if err != nil {
		if k.Encrypted {
			// PBES2 and the legacy format detect a wrong passphrase only
			// through CBC padding, which random bytes pass 1 time in 256;
			// the garbage then fails to parse.
			return nil, ErrIncorrectPassphrase
		}
		return nil, fmt.Errorf("parsing %s key: %w", k.Format, errors.Unwrap(err))
	}
	signer, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %T is not a private key", ErrUnsupportedKey, parsed)
	}
	if err := checkServingKey(signer); err != nil {
		return nil, err
	}
	k.Signer = signer
	return k, nil
}

// oidRSAEncryption is rsaEncryption, RFC 8017 appendix A.1.
var oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}

// rsaModulusBits reads the modulus size of an RSA key in PKCS#1 (pkcs1
// true) or PKCS#8 DER without building the key, so that an oversized key is
// refused before crypto/rsa spends seconds validating it. ok is false when
// der is not an RSA key; the real parser then reports any problem.
func rsaModulusBits(der []byte, pkcs1 bool) (bits int, ok bool) {
	if !pkcs1 {
		var p8 struct {
			Version    int
			Algo       asn1.RawValue
			PrivateKey []byte
		}
		if _, err := asn1.Unmarshal(der, &p8); err != nil {
			return 0, false
		}
		var oid asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(p8.Algo.Bytes, &oid); err != nil || !oid.Equal(oidRSAEncryption) {
			return 0, false
		}
		der = p8.PrivateKey
	}
	var seq asn1.RawValue
	if _, err := asn1.Unmarshal(der, &seq); err != nil {
		return 0, false
	}
	var version int
	rest, err := asn1.Unmarshal(seq.Bytes, &version)
	if err != nil {
		return 0, false
	}
	var n asn1.RawValue
	if _, err := asn1.Unmarshal(rest, &n); err != nil || n.Tag != asn1.TagInteger {
		return 0, false
	}
	m := bytes.TrimLeft(n.Bytes, "\x00")
	if len(m) == 0 {
		return 0, false
	}
	bits = (len(m)-1)*8 + bitLen8(m[0])
	return bits, true
}

func bitLen8(b byte) int {
	n := 0
	for ; b != 0; b >>= 1 {
		n++
	}
	return n
}

// EncodeKeyPEM returns key as a PKCS#8 PEM block, encrypted with PBES2 when
// passphrase is non-empty.
func EncodeKeyPEM(key crypto.Signer, passphrase []byte) ([]byte, error) {
	opts := []pemutil.Options{pemutil.WithPKCS8(true)}
	if len(passphrase) > 0 {
		opts = append(opts, pemutil.WithPassword(passphrase))
	}
	block, err := pemutil.Serialize(key, opts...)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// ReadCertificatesFile reads a PEM certificate or chain file, leaf first.
// See [ParseCertificatesPEM] for the errors; they name the file. Only a
// regular file of at most 1 MiB is read ([ErrNotRegularFile],
// [ErrFileTooLarge]).
func ReadCertificatesFile(path string) ([]*x509.Certificate, error) {
	return readCertificatesFile(path, trustfile.Certificate)
}

func readCertificatesFile(path string, k trustfile.Kind) ([]*x509.Certificate, error) {
	data, _, err := readFile(path, k)
	if err != nil {
		return nil, fmt.Errorf("reading certificate %q: %w", path, err)
	}
	certs, err := ParseCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("reading certificate %q: %w", path, err)
	}
	return certs, nil
}

// ReadCertificateFile reads a PEM file and returns its first certificate
// (the leaf of a chain file).
func ReadCertificateFile(path string) (*x509.Certificate, error) {
	certs, err := ReadCertificatesFile(path)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// ReadKeyFile reads a private key file. See [ParseKeyPEM] for the formats
// and errors, and [KeyOptions.RequirePrivateFile] for the owner and mode
// checks, which fail before the key is parsed. path may also be a pkcs11:
// URI, and the file may hold one (a .uri file): the key in the token is
// opened through opts.Tokens, with a [*TokenError] when it cannot be.
func ReadKeyFile(path string, opts KeyOptions) (*Key, error) {
	return readKeyFile(path, trustfile.PrivateKey, opts)
}

// readKeyFile is ReadKeyFile for a key of kind k (a next key, a CA key).
func readKeyFile(path string, k trustfile.Kind, opts KeyOptions) (*Key, error) {
	path = opts.Tokens.TakePIN(path)
	data, fi, err := readKeyRef(path, keyKind(k, opts.RequirePrivateFile))
	if err != nil {
		return nil, fmt.Errorf("reading key %q: %w", path, err)
	}
	key, err := parseKeyData(data, opts)
	if err != nil {
		return nil, fmt.Errorf("reading key %q: %w", path, err)
	}
	if fi != nil {
		key.Mode = fi.Mode().Perm()
	}
	return key, nil
}

// WriteKeyFile writes key to path as PKCS#8 PEM (encrypted when
// opts.Passphrase is set), atomically and with mode 0600 from creation.
func WriteKeyFile(path string, key crypto.Signer, opts WriteOptions) error {
	data, err := EncodeKeyPEM(key, opts.Passphrase)
	if err != nil {
		return fmt.Errorf("writing key %q: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, data, atomicfile.Options{Perm: keyFileMode, Overwrite: opts.Overwrite}); err != nil {
		return fmt.Errorf("writing key: %w", err)
	}
	return nil
}

// WriteCertificatesFile writes certificates to path as PEM, atomically and
// with mode 0644.
func WriteCertificatesFile(path string, certs []*x509.Certificate, opts WriteOptions) error {
	if len(certs) == 0 {
		return fmt.Errorf("writing certificate %q: %w", path, ErrNoCertificate)
	}
	if err := atomicfile.WriteFile(path, EncodeCertificatesPEM(certs...), atomicfile.Options{Perm: certFileMode, Overwrite: opts.Overwrite}); err != nil {
		return fmt.Errorf("writing certificate: %w", err)
	}
	return nil
}
