package dtls

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v4"
	"github.com/pion/dtls/v4/pkg/protocol"

	"github.com/spacecaptain/spacecaptain/internal/testutil"
)

// The experiment behind the gate's design (docs/SECURITY.md, "DTLS:
// spoofed handshakes"): a stateless front end answers the first
// ClientHello with an HMAC cookie of its own (RFC 6347, section 4.2.1) and
// hands pion/dtls, its own cookie exchange off
// (WithInsecureSkipVerifyHello), only the second ClientHello, the one that
// returned the cookie. pion v4.0.2 cannot take it: it pulls the
// ClientHello at message_seq 0 (flight0Parse), and the second one is
// message_seq 1, so the handshake never starts; rewriting it to 0 makes
// pion answer with a ServerHello at message_seq 0, which the client, having
// had a HelloVerifyRequest at 0, refuses (and the Finished hashes, which
// cover message_seq, would differ anyway). If a later pion passes this
// test, the gate can become stateless: see the test's failure message.
func TestStatelessCookieHandoffFails(t *testing.T) {
	for _, rewrite := range []bool{false, true} {
		name := "as sent"
		if rewrite {
			name = "message_seq rewritten to 0"
		}
		t.Run(name, func(t *testing.T) {
			cerr, serr := statelessHandoff(t, rewrite)
			t.Logf("client: %v; server: %v", cerr, serr)
			if cerr == nil && serr == nil {
				t.Fatal("pion completed a handshake handed over by a stateless cookie front end: the gate could now answer first ClientHellos statelessly (gate.go, SECURITY.md)")
			}
		})
	}
}

func statelessHandoff(t *testing.T, rewrite bool) (clientErr, serverErr error) {
	cert := testutil.MustCert(t, testutil.CertOptions{Serial: 1}).TLS
	key := []byte("stateless cookie key")
	cookieFor := func(a net.Addr) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(a.String()))
		return m.Sum(nil)[:20]
	}

	inner := listenLoopback(t)
	ln, err := piondtls.Listen(inner, piondtls.WithCertificates(cert), piondtls.WithInsecureSkipVerifyHello(true),
		piondtls.WithMaxVersion(protocol.Version1_2), piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
		piondtls.WithLoggerFactory(newPionLogs(testLogger(t))))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	serverDone := make(chan error, 1)
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			serverDone <- err
			return
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		serverDone <- c.(*piondtls.Conn).HandshakeContext(ctx)
	})

	front := listenLoopback(t)
	defer front.Close()
	relay, err := net.DialUDP("udp", nil, inner.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	var mu sync.Mutex
	var client net.Addr
	wg.Go(func() { // pion to the client
		buf := make([]byte, 65536)
		for {
			n, err := relay.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			to := client
			mu.Unlock()
			_, _ = front.WriteTo(buf[:n], to)
		}
	})
	wg.Go(func() { // the client to the front end, then to pion
		buf := make([]byte, 65536)
		for {
			n, from, err := front.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			client = from
			mu.Unlock()
			d := buf[:n]
			if cookie, ok := clientHelloCookie(d); ok {
				switch {
				case len(cookie) == 0:
					_, _ = front.WriteTo(statelessHVR(d, cookieFor(from)), from)
					continue
				case !hmac.Equal(cookie, cookieFor(from)):
					continue
				case rewrite:
					binary.BigEndian.PutUint16(d[recordHeaderSize+4:], 0)
				}
			}
			_, _ = relay.Write(d)
		}
	})

	pc := listenLoopback(t)
	c, err := piondtls.Client(pc, front.LocalAddr(), piondtls.WithInsecureSkipVerify(true),
		piondtls.WithMaxVersion(protocol.Version1_2), piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret),
		piondtls.WithLoggerFactory(newPionLogs(testLogger(t))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	clientErr = c.HandshakeContext(ctx)
	c.Close()
	pc.Close()
	serverErr = <-serverDone
	relay.Close()
	front.Close()
	return clientErr, serverErr
}

// statelessHVR builds a HelloVerifyRequest answering the ClientHello ch,
// as a stateless front end would: DTLS 1.0 in the body (RFC 6347, section
// 4.2.1), the ClientHello's record sequence number.
func statelessHVR(ch, cookie []byte) []byte {
	body := append([]byte{0xfe, 0xff, byte(len(cookie))}, cookie...)
	hs := []byte{handshakeHelloVerifyRequest, 0, 0, byte(len(body)), 0, 0, 0, 0, 0, 0, 0, byte(len(body))}
	rec := make([]byte, recordHeaderSize, recordHeaderSize+len(hs)+len(body))
	rec[0], rec[1], rec[2] = contentHandshake, 0xfe, 0xfd
	copy(rec[3:11], ch[3:11])
	binary.BigEndian.PutUint16(rec[11:], uint16(len(hs)+len(body)))
	return append(append(rec, hs...), body...)
}
