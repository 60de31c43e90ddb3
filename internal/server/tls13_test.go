package server

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/testutil"
)

// These tests speak TLS 1.3 records of their own after a crypto/tls
// handshake (the traffic secrets come from the client's KeyLogWriter), to
// send what a crypto/tls client never sends on demand — a KeyUpdate, a
// record cut inside its header — and to check the records the server
// sends back. RFC 8446 section 5.2 (record protection) and section 7.1
// (HKDF-Expand-Label).

// keyLog keeps the secrets a crypto/tls client logs (NSS key log format).
type keyLog struct {
	mu      sync.Mutex
	secrets map[string][]byte
}

func (k *keyLog) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		secret, err := hex.DecodeString(f[2])
		if err != nil {
			return 0, err
		}
		if k.secrets == nil {
			k.secrets = map[string][]byte{}
		}
		k.secrets[f[0]] = secret
	}
	return len(p), nil
}

func (k *keyLog) secret(t testing.TB, label string) []byte {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	s, ok := k.secrets[label]
	if !ok {
		t.Fatalf("no %s in the key log", label)
	}
	return s
}

// recordLayer protects one direction of a TLS 1.3 connection with an
// AES-GCM suite.
type recordLayer struct {
	t      testing.TB
	hash   func() hash.Hash
	keyLen int
	secret []byte
	aead   cipher.AEAD
	iv     []byte
	seq    uint64
}

func newRecordLayer(t testing.TB, suite uint16, secret []byte) *recordLayer {
	t.Helper()
	r := &recordLayer{t: t}
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256:
		r.hash, r.keyLen = sha256.New, 16
	case tls.TLS_AES_256_GCM_SHA384:
		r.hash, r.keyLen = sha512.New384, 32
	default:
		t.Skipf("suite %s: these tests speak AES-GCM only", tls.CipherSuiteName(suite))
	}
	r.setSecret(secret)
	return r
}

// expandLabel is HKDF-Expand-Label (RFC 8446, section 7.1) with an empty
// context.
func (r *recordLayer) expandLabel(secret []byte, label string, n int) []byte {
	label = "tls13 " + label
	info := binary.BigEndian.AppendUint16(nil, uint16(n))
	info = append(info, byte(len(label)))
	info = append(info, label...)
	info = append(info, 0)
	out, err := hkdf.Expand(r.hash, secret, string(info), n)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

func (r *recordLayer) setSecret(secret []byte) {
	r.secret = secret
	block, err := aes.NewCipher(r.expandLabel(secret, "key", r.keyLen))
	if err != nil {
		r.t.Fatal(err)
	}
	if r.aead, err = cipher.NewGCM(block); err != nil {
		r.t.Fatal(err)
	}
	r.iv = r.expandLabel(secret, "iv", 12)
	r.seq = 0
}

// update moves to the next traffic secret, as a KeyUpdate does (RFC 8446,
// section 7.2).
func (r *recordLayer) update() {
	r.setSecret(r.expandLabel(r.secret, "traffic upd", r.hash().Size()))
}

func (r *recordLayer) nonce() []byte {
	n := bytes.Clone(r.iv)
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], r.seq)
	for i := range seq {
		n[4+i] ^= seq[i]
	}
	r.seq++
	return n
}

// seal returns one protected record carrying content of type typ.
func (r *recordLayer) seal(typ byte, content []byte) []byte {
	inner := append(bytes.Clone(content), typ)
	hdr := []byte{23, 3, 3, 0, 0}
	binary.BigEndian.PutUint16(hdr[3:], uint16(len(inner)+r.aead.Overhead()))
	return r.aead.Seal(hdr, r.nonce(), inner, hdr)
}

// open reads one protected record from br and returns its type and
// content.
func (r *recordLayer) open(br *bufio.Reader) (byte, []byte) {
	r.t.Helper()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(br, hdr); err != nil {
		r.t.Fatalf("reading a record header: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(br, body); err != nil {
		r.t.Fatalf("reading a record: %v", err)
	}
	inner, err := r.aead.Open(nil, r.nonce(), body, hdr)
	if err != nil {
		r.t.Fatalf("opening a record: %v", err)
	}
	inner = bytes.TrimRight(inner, "\x00") // padding
	return inner[len(inner)-1], inner[:len(inner)-1]
}

// tls13Raw is a TLS 1.3 connection whose handshake crypto/tls made and
// whose records the test then reads and writes itself.
type tls13Raw struct {
	raw            net.Conn
	br             *bufio.Reader
	client, server *recordLayer
}

// dialTLS13Raw dials e (whose server must send no session tickets, or
// they would come first) and hands the connection over to the test.
func dialTLS13Raw(t testing.TB, e *testEnv, pool *x509.CertPool) *tls13Raw {
	t.Helper()
	raw := e.dialRaw()
	kl := &keyLog{}
	tc := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1",
		MinVersion: tls.VersionTLS13, KeyLogWriter: kl})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	suite := tc.ConnectionState().CipherSuite
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	return &tls13Raw{
		raw:    raw,
		br:     bufio.NewReader(raw),
		client: newRecordLayer(t, suite, kl.secret(t, "CLIENT_TRAFFIC_SECRET_0")),
		server: newRecordLayer(t, suite, kl.secret(t, "SERVER_TRAFFIC_SECRET_0")),
	}
}

// startTLS13NoTickets starts a TLS server that sends no session tickets,
// and returns the pool that trusts its certificate.
func startTLS13NoTickets(t *testing.T, engine string, opts Options) (*testEnv, *x509.CertPool) {
	t.Helper()
	tcert := testutil.MustCert(t, testutil.CertOptions{})
	cert, pool := tcert.TLS, tcert.Pool
	cfg := serverTLS(cert)
	cfg.SessionTicketsDisabled = true
	opts.TLSConfig = cfg
	e := start(t, engine, modeTLS13, opts)
	e.clientTLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
	return e, pool
}

const (
	recordHandshake    = 22
	recordApplication  = 23
	handshakeKeyUpdate = 24
)

// TestKeyUpdateAnsweredFromRead: a client's KeyUpdate with
// update_requested makes crypto/tls write the server's own KeyUpdate from
// inside Read (crypto/tls conn.go, handleKeyUpdate). The answer must reach
// the client before the reply to the request that follows, and both
// directions must move to the next keys.
func TestKeyUpdateAnsweredFromRead(t *testing.T) {
	for _, engine := range testEngines() {
		t.Run(engine, func(t *testing.T) {
			e, pool := startTLS13NoTickets(t, engine, Options{})
			c := dialTLS13Raw(t, e, pool)
			keyUpdate := []byte{handshakeKeyUpdate, 0, 0, 1, 1} // update_requested
			out := c.client.seal(recordHandshake, keyUpdate)
			c.client.update()
			out = append(out, c.client.seal(recordApplication, proto.AppendFrame(nil, proto.Echo, []byte("after the update")))...)
			if _, err := c.raw.Write(out); err != nil {
				t.Fatal(err)
			}

			typ, content := c.server.open(c.br)
			if typ != recordHandshake || !bytes.Equal(content, []byte{handshakeKeyUpdate, 0, 0, 1, 0}) {
				t.Fatalf("first record: got type %d, content % x; want the server's KeyUpdate (update_not_requested)", typ, content)
			}
			c.server.update()
			typ, content = c.server.open(c.br)
			f, n, err := proto.Parse(content, proto.DefaultMaxBody)
			if typ != recordApplication || err != nil || n != len(content) || string(f.Body) != "after the update" {
				t.Fatalf("second record: got type %d, content %q; want the ECHO reply under the new keys", typ, content)
			}
			e.assertHealthy()
		})
	}
}

// TestDataWithClientFinished: the client's first request travels in the
// same segment as its Finished, so crypto/tls has it in its buffer when
// the server's Handshake returns (crypto/tls conn.go, readFromUntil reads
// what the socket has) and the socket itself has nothing more: an engine
// must read before it waits for the socket.
func TestDataWithClientFinished(t *testing.T) {
	for _, engine := range testEngines() {
		t.Run(engine, func(t *testing.T) {
			e := start(t, engine, modeTLS13, Options{})
			hc := &holdConn{Conn: e.dialRaw()}
			cfg := e.clientTLS.Clone()
			// The client checks the server's certificate before it sends
			// its Finished: from then on its writes wait for flush.
			cfg.VerifyConnection = func(tls.ConnectionState) error { hc.hold(); return nil }
			tc := tls.Client(hc, cfg)
			_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if _, err := tc.Write(proto.AppendFrame(nil, proto.Echo, []byte("with the finished"))); err != nil {
				t.Fatal(err)
			}
			if n := hc.flush(t); n < 2 {
				t.Fatalf("flushed %d records at once, want the Finished and the request", n)
			}
			if f := receive(t, tc); string(f.Body) != "with the finished" {
				t.Fatalf("got %q, want the ECHO of the request sent with the Finished", f.Body)
			}
		})
	}
}

// holdConn holds back what is written once hold is called, until flush
// writes it all in one write.
type holdConn struct {
	net.Conn
	mu      sync.Mutex
	holding bool
	buf     []byte
	writes  int
}

func (h *holdConn) hold() { h.mu.Lock(); h.holding = true; h.mu.Unlock() }

func (h *holdConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.holding {
		h.buf = append(h.buf, p...)
		h.writes++
		return len(p), nil
	}
	return h.Conn.Write(p)
}

// flush writes what was held and returns how many writes it gathered.
func (h *holdConn) flush(t testing.TB) int {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.holding = false
	if _, err := h.Conn.Write(h.buf); err != nil {
		t.Fatal(err)
	}
	return h.writes
}
