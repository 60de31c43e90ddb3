package pinning

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParsePinForms(t *testing.T) {
	sum := sha256.Sum256([]byte("a key"))
	want := Pin{sum: sum}
	b64 := base64.StdEncoding.EncodeToString(sum[:])
	hx := hex.EncodeToString(sum[:])
	var colon []string
	for i := 0; i < len(hx); i += 2 {
		colon = append(colon, strings.ToUpper(hx[i:i+2]))
	}
	tests := []struct {
		name string
		in   string
	}{
		{"curl form", "sha256//" + b64},
		{"upper-case prefix", "SHA256//" + b64},
		{"unpadded", "sha256//" + strings.TrimRight(b64, "=")},
		{"bare base64", b64},
		{"hex", hx},
		{"colon hex as openssl prints", strings.Join(colon, ":")},
		{"surrounding space", "  sha256//" + b64 + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePin(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

// A bare base64 digest can hold "//" after letters, which reads like
// ALG//VALUE: it is a pin, not another algorithm's (found by fuzzing:
// the Base64 form of such a pin did not parse back).
func TestParsePinBareBase64WithSlashes(t *testing.T) {
	const in = "AAAAAAAA//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	p, err := ParsePin(in)
	if err != nil {
		t.Fatal(err)
	}
	if p.Base64() != in {
		t.Errorf("got %s, want %s", p.Base64(), in)
	}
	if _, err := ParsePin("sha1//" + base64.StdEncoding.EncodeToString(make([]byte, 20))); err == nil || !strings.Contains(err.Error(), "only sha256// pins") {
		t.Errorf("a sha1// pin: got %v, want it refused as another algorithm", err)
	}
}

func TestParsePinErrors(t *testing.T) {
	tests := []struct {
		name, in, wantSub string
	}{
		{"empty", "", "decodes to 0 bytes"},
		{"short digest", "sha256//" + base64.StdEncoding.EncodeToString([]byte("short")), "decodes to 5 bytes"},
		{"bad base64", "sha256//!!!", "invalid base64"},
		{"odd hex", strings.Repeat("a", 65), "64 hex digits"},
		{"sha1 hex length", strings.Repeat("ab:", 19) + "ab", "want sha256//BASE64"},
		{"all-zero digest", strings.Repeat("0", 64), "all zeros"},
		{"all-zero digest in base64", "sha256//" + base64.StdEncoding.EncodeToString(make([]byte, 32)), "all zeros"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePin(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.wantSub) {
				t.Errorf("got error %v, want one containing %q", err, tt.wantSub)
			}
		})
	}
}

func TestPinEqual(t *testing.T) {
	a := PinOfSPKI([]byte("a"))
	b := PinOfSPKI([]byte("b"))
	if !a.Equal(PinOfSPKI([]byte("a"))) {
		t.Error("same key: got not equal, want equal")
	}
	if a.Equal(b) {
		t.Error("different keys: got equal, want not equal")
	}
	if (Pin{}).Equal(Pin{}) {
		t.Error("zero pins: got equal, want the zero pin to match nothing")
	}
}

// The pin is SHA-256 over the whole DER SubjectPublicKeyInfo, the same for a
// certificate, its public key and its private key, for every key type.
func TestPinSourcesAgree(t *testing.T) {
	for _, key := range mustKeys(t) {
		t.Run(keyName(key), func(t *testing.T) {
			cert := mustSelfSigned(t, key)
			want := PinOfSPKI(cert.RawSubjectPublicKeyInfo)
			if want != (Pin{sum: sha256.Sum256(cert.RawSubjectPublicKeyInfo)}) {
				t.Fatal("PinOfSPKI is not SHA-256 of the SPKI")
			}
			fromPub, err := PinOfPublicKey(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			if !fromPub.Equal(want) {
				t.Errorf("from public key: got %v, want %v", fromPub, want)
			}
			spki, err := x509.MarshalPKIXPublicKey(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			files := map[string]*pem.Block{
				"cert.pem":   {Type: "CERTIFICATE", Bytes: cert.Raw},
				"pub.pem":    {Type: "PUBLIC KEY", Bytes: spki},
				"pkcs8.pem":  {Type: "PRIVATE KEY", Bytes: pkcs8},
				"bundle.pem": {Type: "CERTIFICATE", Bytes: cert.Raw},
			}
			if ec, ok := key.(*ecdsa.PrivateKey); ok {
				der, err := x509.MarshalECPrivateKey(ec)
				if err != nil {
					t.Fatal(err)
				}
				files["sec1.pem"] = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
			}
			if r, ok := key.(*rsa.PrivateKey); ok {
				files["pkcs1.pem"] = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(r)}
			}
			dir := t.TempDir()
			for name, block := range files {
				path := filepath.Join(dir, name)
				data := pem.EncodeToMemory(block)
				if name == "bundle.pem" {
					data = append(data, data...)
				}
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				got, err := ReadPinFile(path)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !got.Equal(want) {
					t.Errorf("%s: got %v, want %v", name, got, want)
				}
			}
		})
	}
}

func TestParsePinPEMRefusesEncryptedKey(t *testing.T) {
	data := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	_, err := ParsePinPEM(data)
	if err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Errorf("got error %v, want one saying the key is encrypted", err)
	}
	if _, err := ParsePinPEM([]byte("not pem")); err == nil {
		t.Error("got no error for non-PEM input")
	}
}

func TestPinTextRoundTrip(t *testing.T) {
	p := PinOfSPKI([]byte("k"))
	text, err := p.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	var q Pin
	if err := q.UnmarshalText(text); err != nil {
		t.Fatal(err)
	}
	if !q.Equal(p) {
		t.Errorf("got %v, want %v", q, p)
	}
}

func FuzzParsePin(f *testing.F) {
	p := PinOfSPKI([]byte("seed"))
	for _, s := range []string{p.String(), p.Hex(), p.Base64(), "sha256//", "::::", strings.Repeat("0", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePin(s)
		if err != nil {
			return
		}
		for _, form := range []string{p.String(), p.Hex(), p.Base64()} {
			q, err := ParsePin(form)
			if err != nil {
				t.Fatalf("reparsing %q: %v", form, err)
			}
			if q != p {
				t.Fatalf("round trip of %q: got %v, want %v", form, q, p)
			}
		}
	})
}

func FuzzParsePinPEM(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePinPEM(data)
		if err != nil {
			return
		}
		if p.IsZero() {
			t.Fatal("parsed a zero pin without error")
		}
		q, err := ParsePin(p.String())
		if err != nil || q != p {
			t.Fatalf("round trip: got %v, %v, want %v", q, err, p)
		}
	})
}

func ExampleParsePin() {
	// A pin in curl's form, as `sc-cert fingerprint --format pin` prints it.
	p, err := ParsePin("sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
	if err != nil {
		panic(err)
	}
	fmt.Println(p.Hex())
	// Output: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
}

func mustKeys(t *testing.T) []crypto.Signer {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return []crypto.Signer{ec, r, ed}
}

func keyName(k crypto.Signer) string {
	switch k.(type) {
	case *ecdsa.PrivateKey:
		return "ecdsa"
	case *rsa.PrivateKey:
		return "rsa"
	default:
		return "ed25519"
	}
}

func mustSelfSigned(t *testing.T, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
