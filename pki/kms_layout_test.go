//go:build cgo && !nopkcs11

package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The whole life of a layout whose keys are in a token: InitLayout makes
// the three keys there and .uri files naming them; a Source serves from
// the token; a keep-key rotation signed by the CA key in the token keeps
// the pin, and the Source serves it; a promote-next makes the next key
// (in the token) current and a fresh next key in the token, and the
// Source serves that; Renewer finds the CA key through ca.uri.
func TestTokenLayoutLifecycle(t *testing.T) {
	tok, tokens := newToken(t)
	dir := filepath.Join(t.TempDir(), "certs")
	res, err := InitLayout(context.Background(), InitOptions{Dir: dir, Token: tok.URI(), Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	l := res.Layout
	for _, f := range []string{caKeyURIFile, serverKeyURIFile, nextKeyURIFile, CACertFile, ServerCertFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("InitLayout did not make %s: %v", f, err)
		}
	}
	for _, f := range []string{CAKeyFile, ServerKeyFile, NextKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("InitLayout wrote the key file %s with its keys in a token", f)
		}
	}
	if l.ServerKey != filepath.Join(dir, serverKeyURIFile) || ResolveKeyPath(filepath.Join(dir, ServerKeyFile)) != l.ServerKey {
		t.Errorf("the layout's server key is %s; ResolveKeyPath(server.key) = %s", l.ServerKey, ResolveKeyPath(filepath.Join(dir, ServerKeyFile)))
	}
	uri := string(mustRead(t, l.ServerKey))
	if !strings.Contains(uri, "object=sc-server") || !strings.Contains(uri, "id=%02") || strings.Contains(uri, "pin-value") {
		t.Errorf("server.uri: %q, want object=sc-server and id=%%02, no PIN", uri)
	}
	if fi, err := os.Stat(l.ServerKey); err != nil || fi.Mode().Perm() != keyFileMode {
		t.Errorf("server.uri: mode %v (%v), want %v like a key file", fi.Mode().Perm(), err, keyFileMode)
	}
	labels := map[string]string{}
	for _, k := range tok.PrivateKeys(t) {
		labels[k.Label] = k.ID
		if !k.Sensitive() || k.Extractable() {
			t.Errorf("token key %q: Access %q, want sensitive and never extractable", k.Label, k.Access)
		}
	}
	if labels["sc-ca"] != "01" || labels["sc-server"] != "02" || labels["sc-server-next"] != "03" {
		t.Errorf("token keys by label: %v, want sc-ca 01, sc-server 02, sc-server-next 03", labels)
	}

	roots := x509.NewCertPool()
	roots.AddCert(res.CA)
	rec := newRecorder(t)
	src, err := NewCertReloader(CertReloaderOptions{
		CertPath: l.ServerCert, NextKeyPath: l.NextKey, Logger: rec.logger(), OnReload: rec.onReload,
		Key: KeyOptions{Tokens: tokens, RequirePrivateFile: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := startTLSServer(t, serverConfig(src.GetCertificate))
	mustServe(t, srv.addr, roots, res.Server)
	if !samePublicKey(src.State().NextKey, res.NextKey) {
		t.Fatalf("the source announces %s as the next key, want the token's", describeKey(src.State().NextKey))
	}

	// Keep-key rotation, signed by the CA key in the token.
	rot, err := Rotate(context.Background(), RotateOptions{CertPath: l.ServerCert, Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rot.New.RawSubjectPublicKeyInfo, res.Server.RawSubjectPublicKeyInfo) || rot.Issuer == nil {
		t.Fatalf("keep-key rotation changed the key or was not CA-issued (issuer %v)", rot.Issuer)
	}
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	mustServe(t, srv.addr, roots, rot.New)

	// Promote the next key.
	prom, err := Rotate(context.Background(), RotateOptions{CertPath: l.ServerCert, PromoteNext: true, Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	if !samePublicKey(prom.New.PublicKey, res.NextKey) {
		t.Fatal("promote-next: the new certificate is not for the old next key")
	}
	if got := string(mustRead(t, l.ServerKey)); got != uri && !strings.Contains(got, "object=sc-server-next;") && !strings.HasSuffix(strings.TrimSpace(strings.Split(got, "?")[0]), "object=sc-server-next") {
		t.Errorf("server.uri after promote-next: %q, want the old next key's URI", got)
	}
	nextURI := string(mustRead(t, l.NextKey))
	if !strings.Contains(nextURI, "object=sc-server-next-2") {
		t.Errorf("server.next.uri after promote-next: %q, want a fresh key labelled sc-server-next-2", nextURI)
	}
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	mustServe(t, srv.addr, roots, prom.New)
	if samePublicKey(src.State().NextKey, res.NextKey) || !samePublicKey(src.State().NextKey, prom.NextKey) {
		t.Error("after promote-next the source does not announce the fresh next key")
	}
	if n := len(tok.PrivateKeys(t)); n != 4 {
		t.Errorf("the token holds %d keys after promote-next, want 4 (the old server key stays until deleted)", n)
	}

	// The renewer finds the CA key through ca.uri and renews.
	r, err := NewRenewer(RenewerOptions{CertPath: l.ServerCert, Tokens: tokens, Logger: rec.logger(),
		Now: func() time.Time { return prom.New.NotAfter.Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	ren, err := r.Check(context.Background())
	if err != nil || ren == nil || ren.Skipped {
		t.Fatalf("renewal with the CA key in the token: %+v, %v", ren, err)
	}
	if !bytes.Equal(ren.New.RawSubjectPublicKeyInfo, prom.New.RawSubjectPublicKeyInfo) {
		t.Error("the renewal changed the key")
	}
}

// A certificate for a key that is not the token's is refused by the
// Source, which keeps serving the old pair.
func TestTokenSourceRefusesOtherKey(t *testing.T) {
	tok, tokens := newToken(t)
	dir := filepath.Join(t.TempDir(), "certs")
	res, err := InitLayout(context.Background(), InitOptions{Dir: dir, Token: tok.URI(), Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	l := res.Layout
	roots := x509.NewCertPool()
	roots.AddCert(res.CA)
	src, err := NewCertReloader(CertReloaderOptions{CertPath: l.ServerCert, KeyPath: l.ServerKey, Logger: testLogger(t), Key: KeyOptions{Tokens: tokens}})
	if err != nil {
		t.Fatal(err)
	}
	srv := startTLSServer(t, serverConfig(src.GetCertificate))

	// A certificate from the same CA, for another key.
	ca, err := ReadKeyFile(l.CAKey, KeyOptions{Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	other := mustKey(t, KeyECDSAP256)
	wrong, err := CreateCertificate(other.Public(), CertOptions{Issuer: res.CA, IssuerKey: ca.Signer})
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, l.ServerCert, EncodeCertificatesPEM(wrong), certFileMode)
	err = src.Reload()
	if !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("Reload with a certificate for another key: got %v, want ErrKeyMismatch", err)
	}
	mustServe(t, srv.addr, roots, res.Server)
}

// A token key that stops signing fails the handshakes that need it with
// ErrKeyUnavailable, is logged at most once per interval with the count,
// and the server goes on; the first signature that works again is logged.
func TestTokenSignFailureLogged(t *testing.T) {
	tok, _ := newToken(t)
	rec := newRecorder(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tokens := NewTokens(TokenOptions{Logger: rec.logger(), Now: func() time.Time { return now }, SignFailureLogInterval: time.Minute})
	defer tokens.Close()
	s := mustTokenKey(t, tokens, tok.URI("id=02", "object=sc-server"), KeyECDSAP256)
	cert := mustSelfSigned(t, s, CertOptions{})
	cfg := serverConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: s, Leaf: cert}, nil
	})
	srv := startTLSServer(t, cfg)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	mustServe(t, srv.addr, roots, cert)

	// The key goes away behind the server's back, as when a token is
	// reinitialised or the object deleted by another program.
	tok.Tool(t, "--delete-object", "--type", "privkey", "--id", "02")
	for i := range 3 {
		if _, err := handshake(srv.addr, roots, tls.VersionTLS13); err == nil {
			t.Fatalf("handshake %d succeeded with the key deleted", i)
		}
		now = now.Add(time.Second)
	}
	if _, err := s.Sign(nil, make([]byte, 32), nil); !errors.Is(err, ErrKeyUnavailable) {
		t.Fatalf("Sign with the key deleted: got %v, want ErrKeyUnavailable", err)
	}
	errs := rec.records(slog.LevelError)
	if len(errs) != 1 {
		t.Fatalf("got %d error lines for 4 failures within a minute, want 1:\n%s", len(errs), rec.dump())
	}
	now = now.Add(time.Minute)
	if _, err := s.Sign(nil, make([]byte, 32), nil); err == nil {
		t.Fatal("Sign succeeded with the key deleted")
	}
	if errs := rec.records(slog.LevelError); len(errs) != 2 || !strings.Contains(rec.dump(), "failures:4") {
		t.Fatalf("after the interval: got %d error lines, want 2, the second counting 4 failures:\n%s", len(errs), rec.dump())
	}
}

// A layout that fails half-way leaves no key behind in the token, and a
// second layout in a token that holds one is refused without touching
// the first one's keys.
func TestTokenLayoutFailures(t *testing.T) {
	tok, tokens := newToken(t)
	dir := filepath.Join(t.TempDir(), "certs")
	_, err := InitLayout(context.Background(), InitOptions{Dir: dir, Token: tok.URI(), Tokens: tokens, CAKeyType: KeyEd25519})
	if !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("an Ed25519 CA key in a token: got %v, want ErrUnsupportedKey", err)
	}
	if keys := tok.PrivateKeys(t); len(keys) != 0 {
		t.Fatalf("the failed layout left %d keys in the token: %+v", len(keys), keys)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 1 { // the lock file may stay
		t.Errorf("the failed layout left files: %v", entries)
	}
	if _, err := InitLayout(context.Background(), InitOptions{Dir: dir, Token: tok.URI(), Tokens: tokens}); err != nil {
		t.Fatal(err)
	}
	before := tok.PrivateKeys(t)
	_, err = InitLayout(context.Background(), InitOptions{Dir: filepath.Join(t.TempDir(), "again"), Token: tok.URI(), Tokens: tokens})
	if !errors.Is(err, ErrTokenKeyExists) || !strings.Contains(err.Error(), "sc-server") {
		t.Fatalf("a second layout in the same token: got %v, want ErrTokenKeyExists naming sc-server", err)
	}
	if after := tok.PrivateKeys(t); len(after) != len(before) {
		t.Errorf("the refused layout changed the token: %d keys, were %d", len(after), len(before))
	}
	_, err = InitLayout(context.Background(), InitOptions{Dir: dir, Token: tok.URI("object=x"), Tokens: tokens, Overwrite: true})
	if !errors.Is(err, ErrKeyURI) {
		t.Errorf("a token URI naming a key: got %v, want ErrKeyURI", err)
	}
}
