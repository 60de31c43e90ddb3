//go:build ignore

// Command genseeds writes the seed corpora in testdata/fuzz: keys in the
// legacy formats and damaged bundles. Run from the repository root:
//
//	go run ./pki/testdata/genseeds.go pki/testdata/fuzz
package main

import (
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spacecaptain/spacecaptain/pki"
	"go.step.sm/crypto/pemutil"
)

func write(dir, name string, data []byte) {
	os.MkdirAll(dir, 0o755)
	s := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
		panic(err)
	}
}

func main() {
	root := os.Args[1]
	ec, _ := pki.GenerateKey(pki.KeyECDSAP256)
	rsaK, _ := pki.GenerateKey(pki.KeyRSA2048)
	sec1, _ := pemutil.Serialize(ec)
	pkcs1, _ := pemutil.Serialize(rsaK)
	legacy, _ := pemutil.Serialize(ec, pemutil.WithPassword([]byte("pw")))
	kd := filepath.Join(root, "FuzzParseKeyPEM")
	write(kd, "sec1", pem.EncodeToMemory(sec1))
	write(kd, "pkcs1", pem.EncodeToMemory(pkcs1))
	write(kd, "legacy-encrypted", pem.EncodeToMemory(legacy))
	write(kd, "ec-parameters-first", append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"), pem.EncodeToMemory(sec1)...))
	p8, _ := pki.EncodeKeyPEM(ec, nil)
	write(kd, "pkcs8-trailing-garbage", append(p8, "garbage\n"...))
	write(kd, "pkcs8-truncated", p8[:len(p8)-30])

	cd := filepath.Join(root, "FuzzParseCertificatesPEM")
	c1, _ := pki.CreateCertificate(ec.Public(), pki.CertOptions{IssuerKey: ec, DNSNames: []string{"a.example"}})
	c2, _ := pki.CreateCertificate(ec.Public(), pki.CertOptions{IssuerKey: ec, IsCA: true})
	b := pki.EncodeCertificatesPEM(c1, c2)
	write(cd, "bundle-crlf", []byte(string(bytesReplace(b))))
	write(cd, "bundle-with-comments", append([]byte("# Issuer: test\n"), b...))
	write(cd, "bundle-trailing-garbage", append(append([]byte{}, b...), "trailing"...))
	write(cd, "bundle-truncated", b[:len(b)-50])
	write(cd, "key-instead", p8)
	write(cd, "der", c1.Raw)
}

func bytesReplace(b []byte) []byte {
	var out []byte
	for _, c := range b {
		if c == '\n' {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}
