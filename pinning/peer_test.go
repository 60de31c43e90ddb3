package pinning

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// VerifyPeer, the check over raw certificates that DTLS clients call,
// decides as VerifyConnection does over TLS: for every mode, the same
// certificates are accepted or refused alike, with the same kind of error.
func TestVerifyPeerAgreesWithTLS(t *testing.T) {
	ca, other := mustCA(t), mustCA(t)
	key := mustKey(t)
	good := ca.issue(t, key, certSpec{})
	wrongName := ca.issue(t, key, certSpec{dns: []string{"elsewhere.example"}})
	expired := ca.issue(t, key, certSpec{notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-time.Hour)})
	selfSigned := mustLeaf(t, key)
	pin := PinOf(good)
	otherPin := PinOf(mustLeaf(t, mustKey(t)))

	type want int
	const (
		accept want = iota
		keyErr
		chainErr
		unknownHost
		validityErr
	)
	for _, tt := range []struct {
		name  string
		chain []*x509.Certificate
		opts  TrustOptions
		known []Pin // in the store, for tofu
		want  want
	}{
		{"ca", []*x509.Certificate{good}, TrustOptions{Mode: ModeCA, Roots: ca.pool()}, nil, accept},
		{"ca, another CA", []*x509.Certificate{good}, TrustOptions{Mode: ModeCA, Roots: other.pool()}, nil, chainErr},
		{"ca, wrong name", []*x509.Certificate{wrongName}, TrustOptions{Mode: ModeCA, Roots: ca.pool()}, nil, chainErr},
		{"ca, expired", []*x509.Certificate{expired}, TrustOptions{Mode: ModeCA, Roots: ca.pool()}, nil, chainErr},
		{"ca+pin", []*x509.Certificate{good}, TrustOptions{Mode: ModeCAPin, Roots: ca.pool(), Pins: mustSet(t, pin)}, nil, accept},
		{"ca+pin, the CA's pin", []*x509.Certificate{good}, TrustOptions{Mode: ModeCAPin, Roots: ca.pool(), Pins: mustSet(t, PinOf(ca.cert))}, nil, accept},
		{"ca+pin, another pin", []*x509.Certificate{good}, TrustOptions{Mode: ModeCAPin, Roots: ca.pool(), Pins: mustSet(t, otherPin)}, nil, keyErr},
		{"pin", []*x509.Certificate{selfSigned}, TrustOptions{Mode: ModePin, Pins: mustSet(t, pin)}, nil, accept},
		{"pin, a backup", []*x509.Certificate{selfSigned}, TrustOptions{Mode: ModePin, Pins: mustSet(t, otherPin, pin)}, nil, accept},
		{"pin, another key", []*x509.Certificate{selfSigned}, TrustOptions{Mode: ModePin, Pins: mustSet(t, otherPin)}, nil, keyErr},
		{"pin, expired, strict", []*x509.Certificate{expired}, TrustOptions{Mode: ModePin, Pins: mustSet(t, pin), StrictExpiry: true}, nil, validityErr},
		{"tofu, first use", []*x509.Certificate{selfSigned}, TrustOptions{Mode: ModeTOFU}, nil, accept},
		{"tofu, first use off", []*x509.Certificate{selfSigned}, TrustOptions{Mode: ModeTOFU, TOFU: TOFUOff}, nil, unknownHost},
		{"tofu, known", []*x509.Certificate{selfSigned}, TrustOptions{Mode: ModeTOFU}, []Pin{pin}, accept},
		{"tofu, changed", []*x509.Certificate{selfSigned}, TrustOptions{Mode: ModeTOFU}, []Pin{otherPin}, keyErr},
		{"insecure", []*x509.Certificate{selfSigned}, TrustOptions{Mode: ModeInsecure}, nil, accept},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, serverSpec{cert: tlsCert(key, tt.chain...), version: tls.VersionTLS12})
			check := func(what string, err error) {
				t.Helper()
				var ke *KeyError
				var ue *UnknownHostError
				var ve *ValidityError
				var ce *tls.CertificateVerificationError
				var got want
				switch {
				case err == nil:
					got = accept
				case errors.As(err, &ke):
					got = keyErr
				case errors.As(err, &ue):
					got = unknownHost
				case errors.As(err, &ve):
					got = validityErr
				case errors.As(err, &ce):
					got = chainErr
				default:
					t.Fatalf("%s: unexpected error %v", what, err)
				}
				if got != tt.want {
					t.Errorf("%s: got %v (%v), want %v", what, got, err, tt.want)
				}
			}
			for _, path := range []string{"tls", "raw"} {
				opts := tt.opts
				opts.Host = srv.addr
				opts.Warn = func(error) {}
				if opts.Mode == ModeTOFU {
					opts.Store = mustStore(t, filepath.Join(t.TempDir(), "known_hosts"), nil)
					for _, p := range tt.known {
						if err := opts.Store.Add(srv.addr, p); err != nil {
							t.Fatal(err)
						}
					}
				}
				if opts.Mode == ModeCA || opts.Mode == ModeCAPin {
					opts.ServerName = "localhost"
				}
				tr, err := NewTrust(opts)
				if err != nil {
					t.Fatal(err)
				}
				if path == "tls" {
					_, err = dial(t, srv.addr, tr.Config())
					check("over TLS", err)
					continue
				}
				raw := make([][]byte, len(tt.chain))
				for i, c := range tt.chain {
					raw[i] = c.Raw
				}
				check("VerifyPeer", tr.VerifyPeer(raw))
			}
		})
	}
}

func TestVerifyPeerBadInput(t *testing.T) {
	tr, err := NewTrust(TrustOptions{Mode: ModePin, Pins: mustSet(t, PinOf(mustLeaf(t, mustKey(t)))), Host: "127.0.0.1:4242"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.VerifyPeer(nil); !errors.Is(err, ErrNoPeerCertificate) {
		t.Errorf("no certificates: got %v, want ErrNoPeerCertificate", err)
	}
	if err := tr.VerifyPeer([][]byte{[]byte("not DER")}); err == nil {
		t.Error("garbage accepted")
	}
	ca, err := NewTrust(TrustOptions{Mode: ModeCA, Roots: x509.NewCertPool()})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.VerifyPeer([][]byte{mustLeaf(t, mustKey(t)).Raw}); err == nil {
		t.Error("ca mode without a server name accepted a certificate")
	}
}
