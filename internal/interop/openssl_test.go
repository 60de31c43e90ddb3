package interop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var keyTypes = []string{"ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"}

// OpenSSL reads every certificate and key sc-cert writes, for every key
// type, and verifies the chain in both layouts.
func TestOpenSSLReadsOurFiles(t *testing.T) {
	openssl := needTool(t, "openssl")
	scCert := bin(t, "sc-cert")
	for _, kt := range keyTypes {
		for _, layout := range []string{"ca", "self-signed"} {
			t.Run(kt+"/"+layout, func(t *testing.T) {
				dir := t.TempDir()
				args := []string{"init", "--key-type", kt}
				if layout == "self-signed" {
					args = append(args, "--self-signed")
				}
				run(t, dir, scCert, args...)
				files := []string{"certs/ca.crt", "certs/server.crt"}
				keys := []string{"certs/server.key", "certs/server.next.key"}
				if layout == "ca" {
					keys = append(keys, "certs/ca.key")
				}
				for _, f := range files {
					text := run(t, dir, openssl, "x509", "-noout", "-text", "-in", f)
					if !strings.Contains(text, "X509v3 Subject Key Identifier") || !strings.Contains(text, "X509v3 Authority Key Identifier") {
						t.Errorf("%s: no SKI/AKI in openssl's view:\n%s", f, text)
					}
				}
				for _, k := range keys {
					run(t, dir, openssl, "pkey", "-noout", "-in", k)
				}
				if got := run(t, dir, openssl, "verify", "-CAfile", "certs/ca.crt", "certs/server.crt"); strings.TrimSpace(got) != "certs/server.crt: OK" {
					t.Errorf("openssl verify: %q", got)
				}
			})
		}
	}
}

// An encrypted key (PKCS#8, PBES2) opens with the passphrase in OpenSSL,
// and not without it.
func TestOpenSSLReadsEncryptedKey(t *testing.T) {
	openssl := needTool(t, "openssl")
	scCert := bin(t, "sc-cert")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw.txt"), []byte("correct horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kt := range []string{"ecdsa-p256", "rsa-2048", "ed25519"} {
		t.Run(kt, func(t *testing.T) {
			run(t, dir, scCert, "create", "--key-type", kt, "--cert", kt+".crt", "--key", kt+".key", "--password-file", "pw.txt")
			text := run(t, dir, openssl, "asn1parse", "-in", kt+".key")
			if !strings.Contains(text, "PBES2") || !strings.Contains(text, "PBKDF2") {
				t.Errorf("not PBES2/PBKDF2:\n%s", text)
			}
			run(t, dir, openssl, "pkey", "-noout", "-in", kt+".key", "-passin", "file:pw.txt")
			if _, errOut, err := runErr(dir, nil, openssl, "pkey", "-noout", "-in", kt+".key", "-passin", "pass:wrong"); err == nil {
				t.Error("openssl opened the key with a wrong passphrase")
			} else if errOut == "" {
				t.Error("openssl said nothing about the wrong passphrase")
			}
		})
	}
}

// openssl verify still accepts server.crt after rotate in the CA layout:
// keep-key and promote-next.
func TestOpenSSLVerifyAfterRotate(t *testing.T) {
	openssl := needTool(t, "openssl")
	scCert := bin(t, "sc-cert")
	dir := t.TempDir()
	run(t, dir, scCert, "init")
	before := run(t, dir, openssl, "x509", "-noout", "-serial", "-in", "certs/server.crt")
	for _, args := range [][]string{{"rotate"}, {"rotate", "--promote-next"}, {"rotate", "--validity", "7d"}} {
		run(t, dir, scCert, args...)
		if got := run(t, dir, openssl, "verify", "-CAfile", "certs/ca.crt", "certs/server.crt"); strings.TrimSpace(got) != "certs/server.crt: OK" {
			t.Errorf("after %v: openssl verify: %q", args, got)
		}
		run(t, dir, openssl, "pkey", "-noout", "-in", "certs/server.key")
	}
	if after := run(t, dir, openssl, "x509", "-noout", "-serial", "-in", "certs/server.crt"); after == before {
		t.Error("the serial did not change")
	}
	// The self-signed layout: ca.crt is rewritten, so it verifies too.
	run(t, dir, scCert, "init", "--dir", "plain", "--self-signed")
	run(t, dir, scCert, "rotate", "--cert", "plain/server.crt")
	if got := run(t, dir, openssl, "verify", "-CAfile", "plain/ca.crt", "plain/server.crt"); strings.TrimSpace(got) != "plain/server.crt: OK" {
		t.Errorf("self-signed after rotate: openssl verify: %q", got)
	}
}

// Our pin is curl's: sha256// + base64 of SHA-256 over the DER public key,
// computed by OpenSSL. Our hex fingerprint is openssl x509 -fingerprint's.
func TestPinAndFingerprintMatchOpenSSL(t *testing.T) {
	openssl := needTool(t, "openssl")
	sh := needTool(t, "sh")
	scCert := bin(t, "sc-cert")
	dir := t.TempDir()
	for _, kt := range []string{"ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519"} {
		t.Run(kt, func(t *testing.T) {
			d := filepath.Join(dir, kt)
			run(t, dir, scCert, "init", "--dir", d, "--key-type", kt)
			crt := filepath.Join(d, "server.crt")
			pipeline := "set -e; " + openssl + " x509 -pubkey -noout -in \"$1\" | " + openssl + " pkey -pubin -outform der | " +
				openssl + " dgst -sha256 -binary | " + openssl + " base64 -A"
			want := "sha256//" + strings.TrimSpace(run(t, dir, sh, "-c", pipeline, "sh", crt))
			for _, f := range []string{crt, filepath.Join(d, "server.key")} {
				if got := strings.TrimSpace(run(t, dir, scCert, "fingerprint", f)); got != want {
					t.Errorf("pin of %s: got %s, openssl says %s", filepath.Base(f), got, want)
				}
			}
			fp := run(t, dir, openssl, "x509", "-noout", "-fingerprint", "-sha256", "-in", crt)
			_, wantHex, ok := strings.Cut(strings.TrimSpace(fp), "=")
			if !ok {
				t.Fatalf("openssl fingerprint output: %q", fp)
			}
			if got := strings.TrimSpace(run(t, dir, scCert, "fingerprint", "--format", "hex", crt)); got != wantHex {
				t.Errorf("hex fingerprint: got %s, openssl says %s", got, wantHex)
			}
		})
	}
}

// sc-cert reads keys OpenSSL writes in the legacy formats (SEC 1 with EC
// PARAMETERS, PKCS#1, Proc-Type encryption) and in PKCS#8, and finds the
// same pin OpenSSL does.
func TestWeReadOpenSSLKeys(t *testing.T) {
	openssl := needTool(t, "openssl")
	scCert := bin(t, "sc-cert")
	dir := t.TempDir()
	gen := [][]string{
		{"sec1.key", "ecparam", "-name", "prime256v1", "-genkey", "-out", "sec1.key"},
		{"pkcs1.key", "genrsa", "-traditional", "-out", "pkcs1.key", "2048"},
		{"pkcs8.key", "genpkey", "-algorithm", "ed25519", "-out", "pkcs8.key"},
	}
	for _, g := range gen {
		run(t, dir, openssl, g[1:]...)
	}
	run(t, dir, openssl, "ec", "-in", "sec1.key", "-aes256", "-passout", "pass:pw", "-out", "legacy-enc.key")
	run(t, dir, openssl, "pkcs8", "-topk8", "-in", "pkcs1.key", "-v2", "aes-256-cbc", "-passout", "pass:pw", "-out", "pkcs8-enc.key")
	tests := []struct{ file, format string }{
		{"sec1.key", "SEC 1"}, {"pkcs1.key", "PKCS#1"}, {"pkcs8.key", "PKCS#8"},
		{"legacy-enc.key", "legacy encrypted"}, {"pkcs8-enc.key", "PKCS#8 encrypted"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			out, errOut, err := runEnv(dir, []string{"SC_KEY_PASSWORD=pw"}, scCert, "inspect", tt.file)
			if err != nil {
				t.Fatalf("%v: %s", err, errOut)
			}
			if !strings.Contains(out, tt.format) {
				t.Errorf("format: want %q in\n%s", tt.format, out)
			}
		})
	}
}
