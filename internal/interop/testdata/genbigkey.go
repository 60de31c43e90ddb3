//go:build ignore

// Command genbigkey writes rsa-8200.key.testing, the RSA key over
// pki.MaxRSABits (8,192) that the toolkit-fault tests hand to sc-server and
// sc-cert (issue 7): they must refuse it when loading it, with a clear
// error, rather than serve with it (each handshake would cost a signature
// with an 8,200-bit key). It is a real key — valid primes, so only the size
// check can refuse it — and making one takes minutes, so it is committed;
// its certificate is made by the test, so nothing here expires.
//
// The PEM label is spelled "TESTING KEY" so that no secret scanner mistakes
// a test key for a leaked one; the test restores "PRIVATE KEY" in a
// temporary file (the crypto/tls testingKey convention).
//
// Run from the repository root (a few minutes):
//
//	go run ./internal/interop/testdata/genbigkey.go
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"log"
	"os"
)

const bits = 8200

func main() {
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		log.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		log.Fatal(err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "TESTING KEY", Bytes: der})
	if err := os.WriteFile("internal/interop/testdata/rsa-8200.key.testing", out, 0o644); err != nil {
		log.Fatal(err)
	}
}
