package pki_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/pki"
)

// Make the default certificate layout: a local CA that issues the server
// certificate, the server key and a next key for the rollover after this one.
func ExampleInitLayout() {
	dir, err := os.MkdirTemp("", "certs")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	res, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: dir, DNSNames: []string{"game.example"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("CA:", res.CA.Subject.CommonName[:22], res.CA.IsCA)
	fmt.Println("server:", res.Server.Subject.CommonName, res.Server.DNSNames)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			fmt.Println(e.Name())
		}
	}
	// Output:
	// CA: Space Captain local CA true
	// server: game.example [game.example]
	// ca.crt
	// ca.key
	// server.crt
	// server.key
	// server.next.key
}

// Re-issue the server certificate in place on the same key, so every pin
// stays valid, then load and check the new pair.
func ExampleRotate() {
	dir, err := os.MkdirTemp("", "certs")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l := pki.DefaultLayout(dir)
	if _, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: dir}); err != nil {
		log.Fatal(err)
	}

	res, err := pki.Rotate(context.Background(), pki.RotateOptions{CertPath: l.ServerCert})
	if err != nil {
		log.Fatal(err)
	}
	pair, err := pki.LoadPair(l.ServerCert, l.ServerKey, pki.LoadOptions{Key: pki.KeyOptions{RequirePrivateFile: true}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("new serial:", res.New.SerialNumber.Cmp(res.Old.SerialNumber) != 0)
	fmt.Println("same key:", string(res.New.RawSubjectPublicKeyInfo) == string(res.Old.RawSubjectPublicKeyInfo))
	fmt.Println("signed by the local CA:", res.Issuer != nil && pair.Leaf().CheckSignatureFrom(res.Issuer) == nil)
	// Output:
	// new serial: true
	// same key: true
	// signed by the local CA: true
}

// Make a self-signed server certificate for two names, valid 30 days.
func ExampleCreateCertificate() {
	key, err := pki.GenerateKey(pki.KeyEd25519)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := pki.CreateCertificate(key.Public(), pki.CertOptions{
		DNSNames:  []string{"game.example", "www.game.example"},
		Validity:  30 * 24 * time.Hour,
		IssuerKey: key, // self-signed
	})
	if err != nil {
		log.Fatal(err)
	}
	kt, _ := pki.KeyTypeOf(cert.PublicKey)
	fmt.Println(cert.Subject.CommonName, cert.DNSNames, kt)
	fmt.Println("self-signed:", pki.IsSelfSigned(cert), "CA:", cert.IsCA)
	fmt.Println("fingerprint length:", len(pki.Fingerprint(cert)))
	// Output:
	// game.example [game.example www.game.example] ed25519
	// self-signed: true CA: false
	// fingerprint length: 95
}

// Loading a pair checks that it belongs together and is valid now; the
// errors say what is wrong and which file.
func ExampleLoadPair() {
	dir, err := os.MkdirTemp("", "certs")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l := pki.DefaultLayout(dir)
	if _, err := pki.InitLayout(context.Background(), pki.InitOptions{Dir: dir}); err != nil {
		log.Fatal(err)
	}

	_, err = pki.LoadPair(l.ServerCert, l.NextKey, pki.LoadOptions{})
	fmt.Println("wrong key:", errors.Is(err, pki.ErrKeyMismatch))

	_, err = pki.LoadPair(l.ServerKey, l.ServerCert, pki.LoadOptions{})
	fmt.Println("swapped:", strings.Contains(err.Error(), "paths may be swapped"))

	_, err = pki.LoadPair(l.ServerCert, l.ServerKey, pki.LoadOptions{
		Now: func() time.Time { return time.Now().AddDate(1, 0, 0) },
	})
	var expired *pki.ExpiredError
	fmt.Println("expired:", errors.As(err, &expired), filepath.Base(expired.Path))

	pair, err := pki.LoadPair(l.ServerCert, l.ServerKey, pki.LoadOptions{})
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(must(os.ReadFile(l.CACert)))
	_, err = pair.Leaf().Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost"})
	fmt.Println("verifies against ca.crt:", err == nil)
	// Output:
	// wrong key: true
	// swapped: true
	// expired: true server.crt
	// verifies against ca.crt: true
}

func must(b []byte, err error) []byte {
	if err != nil {
		log.Fatal(err)
	}
	return b
}
