//go:build cgo && !nopkcs11

package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spacecaptain/spacecaptain/internal/softhsm"
)

// newToken makes a SoftHSM2 token of the test's own, points this process
// at it and returns it with a Tokens that is closed when the test ends
// (the module is then finalised, so the next test's token is read afresh).
func newToken(t *testing.T) (*softhsm.Token, *Tokens) {
	t.Helper()
	tok := softhsm.New(t, "sc")
	t.Setenv("SOFTHSM2_CONF", tok.Conf)
	tokens := NewTokens(TokenOptions{Logger: testLogger(t)})
	t.Cleanup(func() {
		if err := tokens.Close(); err != nil {
			t.Errorf("closing the tokens: %v", err)
		}
	})
	return tok, tokens
}

// mustTokenKey makes a key in the token and returns its URI.
func mustTokenKey(t *testing.T, tokens *Tokens, uri string, kt KeyType) crypto.Signer {
	t.Helper()
	k, err := parseKeyURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tokens.create(k, kt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A key made in the token signs for its certificate, is sensitive and
// never extractable (read through the token with pkcs11-tool, not through
// the kms), and opens again by URI and through a .uri file.
func TestTokenKeyLifecycle(t *testing.T) {
	tok, tokens := newToken(t)
	for _, tc := range []struct {
		name string
		kt   KeyType
		id   string
		want func(crypto.PublicKey) bool
	}{
		{"P-256", KeyECDSAP256, "11", func(p crypto.PublicKey) bool {
			k, ok := p.(*ecdsa.PublicKey)
			return ok && k.Curve == elliptic.P256()
		}},
		{"P-384", KeyECDSAP384, "12", func(p crypto.PublicKey) bool {
			k, ok := p.(*ecdsa.PublicKey)
			return ok && k.Curve == elliptic.P384()
		}},
		{"RSA-2048", KeyRSA2048, "13", func(p crypto.PublicKey) bool {
			k, ok := p.(*rsa.PublicKey)
			return ok && k.N.BitLen() == 2048
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uri := tok.URI("id="+tc.id, "object=key-"+tc.id)
			s := mustTokenKey(t, tokens, uri, tc.kt)
			if !tc.want(s.Public()) {
				t.Fatalf("got a %s key, want %s", describeKey(s.Public()), tc.name)
			}
			cert := mustSelfSigned(t, s, CertOptions{})
			if err := ProveKey(cert, s); err != nil {
				t.Fatalf("ProveKey: %v", err)
			}
			key, err := ReadKeyFile(uri, KeyOptions{Tokens: tokens})
			if err != nil {
				t.Fatal(err)
			}
			if key.Format != formatToken || !samePublicKey(key.Signer.Public(), s.Public()) {
				t.Fatalf("ReadKeyFile(URI): got %s key %s, want the token key", key.Format, describeKey(key.Signer.Public()))
			}
			uriFile := filepath.Join(t.TempDir(), "server.uri")
			mustWrite(t, uriFile, []byte(uri+"\n"), 0o600)
			key, err = ReadKeyFile(uriFile, KeyOptions{Tokens: tokens, RequirePrivateFile: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := ProveKey(cert, key.Signer); err != nil {
				t.Fatalf("ProveKey through the .uri file: %v", err)
			}
		})
	}
	keys := tok.PrivateKeys(t)
	if len(keys) != 3 {
		t.Fatalf("pkcs11-tool lists %d private keys, want 3: %+v", len(keys), keys)
	}
	for _, k := range keys {
		if !k.Sensitive() || k.Extractable() {
			t.Errorf("private key %q (id %s): Access %q, want sensitive and not extractable", k.Label, k.ID, k.Access)
		}
	}
}

// Every way a token key fails to open gets an error that says what to fix
// (issue 17): not an opaque CKR_FUNCTION_FAILED.
func TestTokenKeyErrors(t *testing.T) {
	tok, tokens := newToken(t)
	mustTokenKey(t, tokens, tok.URI("id=02", "object=sc-server"), KeyECDSAP256)
	// A token stays logged in while a session of this process is open on
	// it, and a second login (with any PIN) is then no test of the PIN.
	closeTokens(t, tokens)
	wrongPIN := filepath.Join(t.TempDir(), "wrong-pin")
	mustWrite(t, wrongPIN, []byte("000000\n"), 0o600)
	worldPIN := filepath.Join(t.TempDir(), "world-pin")
	mustWrite(t, worldPIN, []byte(softhsm.PIN+"\n"), 0o644)
	base := "pkcs11:module-path=" + tok.Module + ";token=sc;id=02;object=sc-server"
	for _, tc := range []struct {
		name  string
		uri   string
		want  error
		words []string
	}{
		{"wrong PIN", base + "?pin-source=" + wrongPIN, ErrTokenPIN, []string{wrongPIN, "CKR_PIN_INCORRECT", `token "sc"`}},
		{"PIN file others may read", base + "?pin-source=" + worldPIN, ErrTokenPIN, []string{worldPIN, "chmod 600"}},
		{"missing PIN file", base + "?pin-source=/nonexistent/pin", ErrTokenPIN, []string{"/nonexistent/pin"}},
		{"no PIN", base, ErrTokenPIN, []string{"no PIN", "pin-source"}},
		{"missing token", "pkcs11:module-path=" + tok.Module + ";token=nope;id=02;object=sc-server?pin-source=" + tok.PINFile, ErrTokenNotFound, []string{`"nope"`, "token="}},
		{"missing module", "pkcs11:module-path=/nonexistent/libnope.so;token=sc;id=02;object=sc-server?pin-source=" + tok.PINFile, ErrTokenModule, []string{"/nonexistent/libnope.so", "does not exist", "module-path"}},
		{"not a module", "pkcs11:module-path=" + tok.Conf + ";token=sc;id=02;object=sc-server?pin-source=" + tok.PINFile, ErrTokenModule, []string{tok.Conf, "could not be loaded"}},
		{"missing object", "pkcs11:module-path=" + tok.Module + ";token=sc;id=09;object=nope?pin-source=" + tok.PINFile, ErrTokenKeyNotFound, []string{`"nope"`, "id 09", "object"}},
		{"no object", "pkcs11:module-path=" + tok.Module + ";token=sc?pin-source=" + tok.PINFile, ErrKeyURI, []string{"object="}},
		{"unknown attribute", base + ";colour=red?pin-source=" + tok.PINFile, ErrKeyURI, []string{"colour"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A fresh Tokens: an open token would be reused.
			tokens := NewTokens(TokenOptions{Logger: testLogger(t)})
			defer tokens.Close()
			_, err := ReadKeyFile(tc.uri, KeyOptions{Tokens: tokens})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			for _, w := range tc.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not name %q: %v", w, err)
				}
			}
			t.Logf("%v", err)
		})
	}
}

// Ed25519 cannot be made in a token through the kms: a clear error.
func TestTokenKeyEd25519(t *testing.T) {
	tok, tokens := newToken(t)
	k, err := parseKeyURI(tok.URI("id=05", "object=ed"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = tokens.create(k, KeyEd25519)
	if !errors.Is(err, ErrUnsupportedKey) || !strings.Contains(err.Error(), "Ed25519") {
		t.Fatalf("got %v, want ErrUnsupportedKey naming Ed25519", err)
	}
}

// A PIN in the URI never reaches an error, a log or a .uri file.
func TestKeyURIPINValueRedacted(t *testing.T) {
	tok, tokens := newToken(t)
	mustTokenKey(t, tokens, tok.URI("id=02", "object=sc-server"), KeyECDSAP256)
	closeTokens(t, tokens)
	const secret = "000999"
	uri := "pkcs11:module-path=" + tok.Module + ";token=sc;id=02;object=sc-server;pin-value=" + secret
	if got := RedactKeyURI(uri); strings.Contains(got, secret) || !strings.Contains(got, "pin-value=REDACTED") {
		t.Errorf("RedactKeyURI: got %s", got)
	}
	fresh := NewTokens(TokenOptions{Logger: testLogger(t)})
	defer fresh.Close()
	clean := fresh.TakePIN(uri)
	if strings.Contains(clean, secret) || strings.Contains(clean, "pin-value") {
		t.Errorf("TakePIN: got %s", clean)
	}
	_, err := ReadKeyFile(clean, KeyOptions{Tokens: fresh})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("got %v, want an error without the PIN", err)
	}
	if !errors.Is(err, ErrTokenPIN) || !strings.Contains(err.Error(), "pin-value") {
		t.Errorf("got %v, want a wrong PIN naming pin-value as its source", err)
	}
}

// closeTokens closes tokens now (newToken's cleanup closes them again,
// which is harmless).
func closeTokens(t *testing.T, tokens *Tokens) {
	t.Helper()
	if err := tokens.Close(); err != nil {
		t.Fatal(err)
	}
}

// testLogger logs to t.Logf.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tLogWriter struct{ t testing.TB }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Logf("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
