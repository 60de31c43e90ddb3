package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"go.step.sm/crypto/pemutil"
)

func TestGenerateKeyTypes(t *testing.T) {
	tests := []struct {
		kt      KeyType
		wantAlg string
		bits    int
	}{
		{"", "ECDSA", 256},
		{KeyECDSAP256, "ECDSA", 256},
		{KeyECDSAP384, "ECDSA", 384},
		{KeyRSA2048, "RSA", 2048},
		{KeyRSA3072, "RSA", 3072},
		{KeyRSA4096, "RSA", 4096},
		{KeyEd25519, "Ed25519", 256},
	}
	for _, tt := range tests {
		t.Run(tt.kt.String(), func(t *testing.T) {
			if testing.Short() && tt.bits >= 3072 {
				t.Skip("slow RSA generation in -short mode")
			}
			k := mustKey(t, tt.kt)
			alg, bits := keyAlgorithm(k.Public())
			if alg != tt.wantAlg || bits != tt.bits {
				t.Errorf("got %s %d, want %s %d", alg, bits, tt.wantAlg, tt.bits)
			}
			got, err := KeyTypeOf(k.Public())
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.kt && !(tt.kt == "" && got == KeyECDSAP256) {
				t.Errorf("KeyTypeOf: got %s, want %s", got, tt.kt)
			}
		})
	}
}

func TestParseKeyType(t *testing.T) {
	tests := []struct {
		in   string
		want KeyType
		ok   bool
	}{
		{"", KeyECDSAP256, true},
		{"P-256", KeyECDSAP256, true},
		{"ecdsa-p384", KeyECDSAP384, true},
		{"RSA", KeyRSA2048, true},
		{"rsa4096", KeyRSA4096, true},
		{"Ed25519", KeyEd25519, true},
		{"rsa-1024", "", false},
		{"dsa", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseKeyType(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("got %q, %v; want %q, ok=%v", got, err, tt.want, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrUnsupportedKey) {
				t.Errorf("got error %v, want ErrUnsupportedKey", err)
			}
		})
	}
}

func TestKeyPEMRoundTrip(t *testing.T) {
	for _, kt := range []KeyType{KeyECDSAP256, KeyECDSAP384, KeyRSA2048, KeyEd25519} {
		for _, pass := range []string{"", "correct horse"} {
			name := kt.String()
			if pass != "" {
				name += "/encrypted"
			}
			t.Run(name, func(t *testing.T) {
				k := mustKey(t, kt)
				data, err := EncodeKeyPEM(k, []byte(pass))
				if err != nil {
					t.Fatal(err)
				}
				wantType := "PRIVATE KEY"
				if pass != "" {
					wantType = "ENCRYPTED PRIVATE KEY"
				}
				if b, _ := pem.Decode(data); b == nil || b.Type != wantType || len(b.Headers) != 0 {
					t.Fatalf("got PEM %q, want a headerless %q block", data[:min(len(data), 40)], wantType)
				}
				got, err := ParseKeyPEM(data, KeyOptions{Passphrase: passphrase(pass)})
				if err != nil {
					t.Fatal(err)
				}
				if !samePublicKey(got.Signer.Public(), k.Public()) {
					t.Error("parsed key differs from the original")
				}
				if got.Encrypted != (pass != "") {
					t.Errorf("Encrypted: got %v, want %v", got.Encrypted, pass != "")
				}
				if pass == "" {
					return
				}
				if _, err := ParseKeyPEM(data, KeyOptions{}); !errors.Is(err, ErrPassphraseRequired) {
					t.Errorf("no passphrase: got %v, want ErrPassphraseRequired", err)
				}
				if _, err := ParseKeyPEM(data, KeyOptions{Passphrase: passphrase("wrong")}); !errors.Is(err, ErrIncorrectPassphrase) {
					t.Errorf("wrong passphrase: got %v, want ErrIncorrectPassphrase", err)
				}
			})
		}
	}
}

// Keys made by older tools: SEC 1, PKCS#1, and the Proc-Type encryption.
func TestParseLegacyKeys(t *testing.T) {
	ec := mustKey(t, KeyECDSAP256)
	rsaKey := mustKey(t, KeyRSA2048)
	sec1, err := pemutil.Serialize(ec)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1, err := pemutil.Serialize(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	legacyEnc, err := pemutil.Serialize(ec, pemutil.WithPassword([]byte("pw")))
	if err != nil {
		t.Fatal(err)
	}
	ecParams := "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
	tests := []struct {
		name   string
		data   []byte
		want   crypto.PublicKey
		format string
	}{
		{"SEC1", pem.EncodeToMemory(sec1), ec.Public(), formatSEC1},
		{"SEC1 after EC PARAMETERS", append([]byte(ecParams), pem.EncodeToMemory(sec1)...), ec.Public(), formatSEC1},
		{"PKCS1", pem.EncodeToMemory(pkcs1), rsaKey.Public(), formatPKCS1},
		{"Proc-Type encrypted", pem.EncodeToMemory(legacyEnc), ec.Public(), formatLegacyEncrypted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKeyPEM(tt.data, KeyOptions{Passphrase: passphrase("pw")})
			if err != nil {
				t.Fatal(err)
			}
			if !samePublicKey(k.Signer.Public(), tt.want) || k.Format != tt.format {
				t.Errorf("got %s key in format %q, want format %q", describeKey(k.Signer.Public()), k.Format, tt.format)
			}
		})
	}
	t.Run("Proc-Type wrong passphrase", func(t *testing.T) {
		// The legacy format detects a wrong passphrase only by its CBC
		// padding or a parse failure afterwards; both must say so.
		for i := range 20 {
			_, err := ParseKeyPEM(pem.EncodeToMemory(legacyEnc), KeyOptions{Passphrase: passphrase("wrong" + strings.Repeat("!", i))})
			if !errors.Is(err, ErrIncorrectPassphrase) {
				t.Fatalf("got %v, want ErrIncorrectPassphrase", err)
			}
		}
	})
}

func TestParseKeyErrors(t *testing.T) {
	k := mustKey(t, KeyECDSAP256)
	cert := mustSelfSigned(t, k, CertOptions{})
	keyPEM, err := EncodeKeyPEM(k, nil)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := EncodeCertificatesPEM(cert)
	pubDER, _ := x509.MarshalPKIXPublicKey(k.Public())
	tests := []struct {
		name    string
		data    []byte
		wantErr error
		wantMsg string
	}{
		{"empty", nil, ErrNoKey, "no PRIVATE KEY"},
		{"certificate instead", certPEM, ErrNoKey, "paths may be swapped"},
		{"public key", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), ErrNoKey, "public key"},
		{"two keys", append(append([]byte{}, keyPEM...), keyPEM...), ErrMalformedPEM, "more than one"},
		{"key and certificate", append(append([]byte{}, keyPEM...), certPEM...), ErrMalformedPEM, "separate files"},
		{"trailing garbage", append(append([]byte{}, keyPEM...), "garbage"...), ErrMalformedPEM, "line 6"},
		{"truncated", keyPEM[:len(keyPEM)-20], ErrMalformedPEM, "line 1"},
		{"openssh", []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"), ErrUnsupportedKey, "ssh-keygen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKeyPEM(tt.data, KeyOptions{})
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("got error %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
}

// craftRSAKey returns a PKCS#1 DER private key whose modulus has the given
// size, without the cost of generating primes that large: only the size
// check, which runs before any validation, may look at it.
func craftRSAKey(t *testing.T, bits int) []byte {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
	if err != nil {
		t.Fatal(err)
	}
	n.SetBit(n, bits-1, 1)
	one := big.NewInt(1)
	der, err := asn1.Marshal(struct {
		Version               int
		N                     *big.Int
		E                     int
		D, P, Q, Dp, Dq, Qinv *big.Int
	}{0, n, 65537, one, one, one, one, one, one})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestRSAKeyTooLargeRefused(t *testing.T) {
	pkcs1 := craftRSAKey(t, 8200)
	// Wrap the same modulus as PKCS#8 too.
	pkcs8, err := asn1.Marshal(struct {
		Version int
		Algo    struct {
			OID  asn1.ObjectIdentifier
			Null asn1.RawValue
		}
		PrivateKey []byte
	}{0, struct {
		OID  asn1.ObjectIdentifier
		Null asn1.RawValue
	}{oidRSAEncryption, asn1.NullRawValue}, pkcs1})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pem  []byte
	}{
		{"PKCS1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: pkcs1})},
		{"PKCS8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKeyPEM(tt.pem, KeyOptions{})
			if !errors.Is(err, ErrKeyTooLarge) || !strings.Contains(err.Error(), "8200 bits") {
				t.Errorf("got %v, want ErrKeyTooLarge naming 8200 bits", err)
			}
		})
	}
	t.Run("8192 passes the size check", func(t *testing.T) {
		bits, ok := rsaModulusBits(craftRSAKey(t, 8192), true)
		if !ok || bits != 8192 {
			t.Errorf("got %d, %v; want 8192, true", bits, ok)
		}
	})
}

func TestWriteKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.key")
	k := mustKey(t, KeyEd25519)
	if err := WriteKeyFile(path, k, WriteOptions{Passphrase: []byte("pw")}); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("mode: got %04o, want 0600", got)
		}
	}
	before := mustRead(t, path)
	err := WriteKeyFile(path, mustKey(t, KeyEd25519), WriteOptions{})
	if !errors.Is(err, ErrExists) || !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second write: got %v, want ErrExists (and fs.ErrExist)", err)
	}
	if !bytes.Equal(mustRead(t, path), before) {
		t.Error("refused write changed the file")
	}
	got, err := ReadKeyFile(path, KeyOptions{Passphrase: passphrase("pw"), RequirePrivateFile: true})
	if err != nil {
		t.Fatal(err)
	}
	if !samePublicKey(got.Signer.Public(), k.Public()) {
		t.Error("read back a different key")
	}
	if err := WriteKeyFile(path, mustKey(t, KeyEd25519), WriteOptions{Overwrite: true}); err != nil {
		t.Errorf("overwrite: %v", err)
	}
}

func TestGroupReadableKeyRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix mode bits on Windows")
	}
	path := filepath.Join(t.TempDir(), "server.key")
	data, err := EncodeKeyPEM(mustKey(t, KeyECDSAP256), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		mustWrite(t, path, data, mode)
		_, err := ReadKeyFile(path, KeyOptions{RequirePrivateFile: true})
		if !errors.Is(err, ErrKeyFilePermissions) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: got %v, want ErrKeyFilePermissions with a chmod hint", mode, err)
		}
		k, err := ReadKeyFile(path, KeyOptions{})
		if err != nil || k.Mode != mode {
			t.Errorf("mode %04o without the check: got %v, mode %v", mode, err, k)
		}
	}
}

func TestDescribeKey(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	r, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		pub  crypto.PublicKey
		want string
	}{
		{p384.Public(), "ECDSA P-384"},
		{r.Public(), "RSA 1024"},
		{ed.Public(), "Ed25519"},
	}
	for _, tt := range tests {
		if got := describeKey(tt.pub); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}
