package pki

import (
	"bytes"
	"testing"
)

// FuzzParseCertificatesPEM checks that the strict bundle parser never
// panics and round-trips: whatever it accepts, re-encoded, parses to the
// same certificates. Seeds: testdata/fuzz/FuzzParseCertificatesPEM and the
// bundles below.
func FuzzParseCertificatesPEM(f *testing.F) {
	k := mustKey(f, KeyEd25519)
	a := mustSelfSigned(f, k, CertOptions{})
	b := mustSelfSigned(f, k, CertOptions{DNSNames: []string{"x.example"}})
	f.Add(EncodeCertificatesPEM(a))
	f.Add(EncodeCertificatesPEM(a, b))
	f.Add(append([]byte("text\n"), EncodeCertificatesPEM(a)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificatesPEM(data)
		if err != nil {
			if certs != nil {
				t.Fatal("certificates returned with an error")
			}
			return
		}
		again, err := ParseCertificatesPEM(EncodeCertificatesPEM(certs...))
		if err != nil {
			t.Fatalf("re-encoded bundle does not parse: %v", err)
		}
		if len(again) != len(certs) {
			t.Fatalf("round trip: got %d certificates, want %d", len(again), len(certs))
		}
		for i := range certs {
			if !bytes.Equal(again[i].Raw, certs[i].Raw) {
				t.Fatalf("round trip changed certificate %d", i)
			}
		}
	})
}

// FuzzParseKeyPEM checks that the key parser never panics and round-trips:
// a key it accepts, written back as PKCS#8 (and encrypted again when it was
// encrypted), parses to the same key.
func FuzzParseKeyPEM(f *testing.F) {
	for _, kt := range []KeyType{KeyECDSAP256, KeyEd25519} {
		k := mustKey(f, kt)
		plain, _ := EncodeKeyPEM(k, nil)
		enc, _ := EncodeKeyPEM(k, []byte("pw"))
		f.Add(plain)
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKeyPEM(data, KeyOptions{Passphrase: passphrase("pw")})
		if err != nil {
			return
		}
		// Encrypting costs a deliberately slow key derivation (PBKDF2,
		// 600,000 rounds): round-trip through encryption only the inputs
		// that were encrypted.
		passes := []string{""}
		if k.Encrypted {
			passes = append(passes, "pw")
		}
		for _, pass := range passes {
			out, err := EncodeKeyPEM(k.Signer, []byte(pass))
			if err != nil {
				t.Fatalf("encoding an accepted key: %v", err)
			}
			again, err := ParseKeyPEM(out, KeyOptions{Passphrase: passphrase(pass)})
			if err != nil {
				t.Fatalf("re-encoded key does not parse: %v", err)
			}
			if !samePublicKey(again.Signer.Public(), k.Signer.Public()) {
				t.Fatal("round trip changed the key")
			}
		}
	})
}
