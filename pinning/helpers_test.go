package pinning

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// versions are the TLS versions every handshake test runs under.
var versions = []struct {
	name string
	v    uint16
}{
	{"TLS1.2", tls.VersionTLS12},
	{"TLS1.3", tls.VersionTLS13},
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// certSpec describes a test certificate. A nil issuer makes it self-signed.
type certSpec struct {
	key       crypto.Signer
	issuer    *x509.Certificate
	issuerKey crypto.Signer
	isCA      bool
	cn        string
	dns       []string
	ips       []net.IP
	notBefore time.Time
	notAfter  time.Time
	// eku is the leaf's extended key usage; nil means serverAuth.
	eku []x509.ExtKeyUsage
}

func mustCert(t testing.TB, s certSpec) *x509.Certificate {
	t.Helper()
	if s.notBefore.IsZero() {
		s.notBefore = time.Now().Add(-time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = time.Now().Add(24 * time.Hour)
	}
	if s.cn == "" {
		s.cn = "test"
	}
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          n,
		Subject:               pkix.Name{CommonName: s.cn},
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		DNSNames:              s.dns,
		IPAddresses:           s.ips,
		BasicConstraintsValid: true,
		IsCA:                  s.isCA,
	}
	if s.isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		if s.eku != nil {
			tmpl.ExtKeyUsage = s.eku
		}
	}
	parent, parentKey := tmpl, s.key
	if s.issuer != nil {
		parent, parentKey = s.issuer, s.issuerKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, s.key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// mustLeaf returns a self-signed server certificate for 127.0.0.1 and
// localhost on key.
func mustLeaf(t testing.TB, key crypto.Signer) *x509.Certificate {
	t.Helper()
	return mustCert(t, certSpec{key: key, dns: []string{"localhost"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}})
}

// testCA is a CA that issues leaves for 127.0.0.1 and localhost.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func mustCA(t testing.TB) *testCA {
	t.Helper()
	key := mustKey(t)
	return &testCA{cert: mustCert(t, certSpec{key: key, isCA: true, cn: "test CA"}), key: key}
}

func (ca *testCA) issue(t testing.TB, key crypto.Signer, s certSpec) *x509.Certificate {
	t.Helper()
	s.key, s.issuer, s.issuerKey = key, ca.cert, ca.key
	if s.dns == nil && s.ips == nil {
		s.dns, s.ips = []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	return mustCert(t, s)
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func tlsCert(key crypto.Signer, chain ...*x509.Certificate) tls.Certificate {
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, cert := range chain {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c
}

// testServer is a TLS server on 127.0.0.1:0. After each handshake it writes
// "ok\n" (so that a TLS 1.3 client receives its session ticket) and then
// echoes lines until the client closes.
type testServer struct {
	addr string
	// hellos receives the SNI of every ClientHello.
	hellos chan string
	// done receives the result of every server-side handshake.
	done chan serverResult

	mu   sync.Mutex
	cert tls.Certificate
}

type serverResult struct {
	err     error
	resumed bool
	// state is the server side's connection state.
	state tls.ConnectionState
}

type serverSpec struct {
	cert    tls.Certificate
	version uint16
	// clientAuth, when set, is the server's client-certificate policy.
	clientAuth tls.ClientAuthType
	// verify, when set, is the server's VerifyConnection.
	verify func(tls.ConnectionState) error
}

func startServer(t testing.TB, s serverSpec) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &testServer{
		addr:   ln.Addr().String(),
		hellos: make(chan string, 100),
		done:   make(chan serverResult, 100),
		cert:   s.cert,
	}
	cfg := &tls.Config{
		MinVersion:       s.version,
		MaxVersion:       s.version,
		ClientAuth:       s.clientAuth,
		VerifyConnection: s.verify,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			select {
			case srv.hellos <- hello.ServerName:
			default:
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			c := srv.cert
			return &c, nil
		},
	}
	var wg sync.WaitGroup
	var conns sync.Map
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conns.Delete(c)
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				tc := tls.Server(c, cfg)
				err := tc.Handshake()
				res := serverResult{err: err, state: tc.ConnectionState()}
				if err == nil {
					res.resumed = tc.ConnectionState().DidResume
				}
				select {
				case srv.done <- res:
				default:
				}
				if err != nil {
					return
				}
				if _, err := io.WriteString(tc, "ok\n"); err != nil {
					return
				}
				io.Copy(tc, tc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	return srv
}

// setCert changes the certificate the server presents from now on: a
// renewal or a key rollover.
func (s *testServer) setCert(c tls.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cert = c
}

// dial connects with cfg, completes the handshake and reads the server's
// greeting, so that a TLS 1.3 session ticket has arrived when it returns.
func dial(t testing.TB, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	d := &tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 10 * time.Second}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(tc).ReadString('\n')
	if err != nil {
		tc.Close()
		return nil, err
	}
	if line != "ok\n" {
		tc.Close()
		return nil, errors.New("unexpected greeting " + line)
	}
	t.Cleanup(func() { tc.Close() })
	return tc, nil
}
