package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/testutil"
)

// clientCert is a self-signed client certificate named cn.
func clientCert(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func pinOf(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256//" + base64.StdEncoding.EncodeToString(sum[:])
}

// logSink collects log lines.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logSink) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

type refusedError struct{ reason string }

func (e *refusedError) Error() string         { return "refused: " + e.reason }
func (e *refusedError) RefusalReason() string { return e.reason }

// A client's identity reaches its KEYS replies and its log lines, and
// CloseClients cuts exactly the connections it matches, within a second,
// while the others keep every reply: on every engine, TLS 1.2 and 1.3.
func TestClientIdentityAndCloseClients(t *testing.T) {
	forEach(t, []mode{modeTLS12, modeTLS13}, func(t *testing.T, engine string, m mode) {
		alice, bob, stranger := clientCert(t, "alice"), clientCert(t, "bob"), clientCert(t, "eve")
		admitted := map[string]bool{pinOf(alice.Leaf): true, pinOf(bob.Leaf): true}
		tcert := testutil.MustCert(t, testutil.CertOptions{})
		cert, pool := tcert.TLS, tcert.Pool
		cfg := serverTLS(cert)
		cfg.ClientAuth = tls.RequestClientCert
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			if !admitted[pinOf(cs.PeerCertificates[0])] {
				return &refusedError{"unknown_client"}
			}
			return nil
		}
		sink := &logSink{}
		e := start(t, engine, m, Options{
			TLSConfig: cfg,
			Keys:      func() []byte { return proto.AppendKeys(nil, pinOf(cert.Leaf), nil) },
			Identify: func(cs tls.ConnectionState) Identity {
				if len(cs.PeerCertificates) == 0 {
					return Identity{}
				}
				return Identity{Pin: pinOf(cs.PeerCertificates[0]), Name: cs.PeerCertificates[0].Subject.CommonName}
			},
			Logger: slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
		dialAs := func(c *tls.Certificate) (*tls.Conn, error) {
			cc := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: m.version, MaxVersion: m.version}
			if c != nil {
				cc.Certificates = []tls.Certificate{*c}
			}
			tc := tls.Client(e.dialRaw(), cc)
			_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err != nil {
				return nil, err
			}
			_ = tc.SetDeadline(time.Time{})
			// The server's verdict on a TLS 1.3 client certificate comes
			// after the client's handshake: a round trip proves it.
			send(t, tc, proto.Keys, nil)
			f, err := receiveErr(tc)
			if err != nil {
				return nil, err
			}
			want := "current " + pinOf(cert.Leaf) + "\n"
			if c != nil {
				want += "client " + pinOf(c.Leaf) + " " + c.Leaf.Subject.CommonName + "\n"
			}
			if string(f.Body) != want {
				t.Errorf("KEYS: got %q, want %q", f.Body, want)
			}
			return tc, nil
		}
		var alices, bobs []*tls.Conn
		for range 3 {
			a, err := dialAs(&alice)
			if err != nil {
				t.Fatal(err)
			}
			b, err := dialAs(&bob)
			if err != nil {
				t.Fatal(err)
			}
			alices, bobs = append(alices, a), append(bobs, b)
		}
		anon, err := dialAs(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dialAs(&stranger); err == nil {
			t.Fatal("an unknown client was served")
		}
		e.rec.waitClosed(t, CloseHandshakeError, 1, 10*time.Second)

		start := time.Now()
		n := e.srv.CloseClients(func(cs tls.ConnectionState) bool {
			return len(cs.PeerCertificates) > 0 && pinOf(cs.PeerCertificates[0]) == pinOf(bob.Leaf)
		})
		if n != len(bobs) {
			t.Errorf("CloseClients closed %d, want %d", n, len(bobs))
		}
		for _, b := range bobs {
			expectClosed(t, b)
		}
		e.rec.waitClosed(t, CloseRevoked, len(bobs), time.Second)
		if took := time.Since(start); took > time.Second {
			t.Errorf("cutting took %v, want within 1 s", took)
		}
		for _, c := range append(alices, anon) {
			if f := roundTrip(t, c, proto.Echo, []byte("hi")); string(f.Body) != "hi" {
				t.Fatalf("got %q, want the echo", f.Body)
			}
		}
		logs := sink.String()
		for _, want := range []string{
			`client_pin="` + pinOf(bob.Leaf) + `" client_name=bob`,
			"closing the connection of a revoked client",
			"reason=revoked",
			"client_refused=unknown_client",
		} {
			if !strings.Contains(logs, want) {
				t.Errorf("log does not say %q:\n%s", want, logs)
			}
		}
	})
}

func TestRefusalReasonWalksTheChain(t *testing.T) {
	err := errors.Join(errors.New("x"), &refusedError{"client_revoked"})
	if got := refusalReason(err); got != "client_revoked" {
		t.Errorf("got %q, want client_revoked", got)
	}
	if got := refusalReason(errors.New("plain")); got != "" {
		t.Errorf("got %q, want none", got)
	}
}
