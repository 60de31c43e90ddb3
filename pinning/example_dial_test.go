package pinning_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spacecaptain/spacecaptain/pinning"
)

// A game client pins a Space Captain server on first use, learns the key
// the server will move to from its KEYS reply, and still trusts it after
// the server has rolled over. The frames are those of docs/PROTOCOL.md: an
// 8-byte header (type, body length, both uint32 little-endian) and a body.
func ExampleTrust_DialContext() {
	srv := startGameServer()
	defer srv.ln.Close()
	dir, err := os.MkdirTemp("", "known-hosts")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := pinning.NewStore(pinning.StoreOptions{Path: filepath.Join(dir, "known_hosts")})
	if err != nil {
		log.Fatal(err)
	}
	trust, err := pinning.NewTrust(pinning.TrustOptions{Mode: pinning.ModeTOFU, Store: store, Host: srv.addr})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The first connection trusts the server's key and records it.
	conn, err := trust.DialContext(ctx, "tcp", srv.addr)
	if err != nil {
		log.Fatal(err)
	}
	// Inside the verified session, ask for the keys and record them.
	current, next, err := askKeys(conn)
	if err != nil {
		log.Fatal(err)
	}
	recorded, err := trust.RecordAnnounced(conn.ConnectionState(), current, next)
	if err != nil {
		log.Fatal(err)
	}
	conn.Close()
	fmt.Println("next keys learned:", len(recorded.Added))

	// The server rolls over to its next key: the client still trusts it.
	srv.rollOver()
	conn, err = trust.DialContext(ctx, "tcp", srv.addr)
	if err != nil {
		log.Fatal(err)
	}
	conn.Close()
	entry, _, err := store.Lookup(srv.addr)
	if err != nil {
		log.Fatal(err)
	}
	now, _ := entry.Current()
	fmt.Println("now trusted as current:", now.Pin.Equal(next[0]))

	// A key nobody announced is refused, and the connection closed.
	srv.replaceKey()
	_, err = trust.DialContext(ctx, "tcp", srv.addr)
	var ke *pinning.KeyError
	fmt.Println("unannounced key refused:", errors.As(err, &ke))
	// Output:
	// next keys learned: 1
	// now trusted as current: true
	// unannounced key refused: true
}

// KEYS is the message type that asks a server for its key pins.
const typeKeys = 3

// askKeys sends KEYS and parses the reply: a line "current PIN", then
// "next PIN" lines; lines with another first word are skipped, so that a
// later server can add some.
func askKeys(conn net.Conn) (current pinning.Pin, next []pinning.Pin, err error) {
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[0:], typeKeys)
	if _, err := conn.Write(hdr[:]); err != nil {
		return current, nil, err
	}
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return current, nil, err
	}
	typ, n := binary.LittleEndian.Uint32(hdr[0:]), binary.LittleEndian.Uint32(hdr[4:])
	if n > 4096 {
		return current, nil, fmt.Errorf("a KEYS reply of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(conn, body); err != nil {
		return current, nil, err
	}
	if typ != typeKeys {
		// An ERROR reply: the server does not know KEYS or has no pins.
		return current, nil, fmt.Errorf("KEYS: %q", body)
	}
	for i, line := range strings.Split(strings.TrimSuffix(string(body), "\n"), "\n") {
		word, pin, _ := strings.Cut(line, " ")
		if i == 0 && word != "current" {
			return current, nil, fmt.Errorf("KEYS: got %q first, want the current pin", line)
		}
		if word != "current" && word != "next" {
			continue
		}
		p, err := pinning.ParsePin(pin)
		if err != nil {
			return current, nil, err
		}
		if word == "current" {
			current = p
		} else {
			next = append(next, p)
		}
	}
	return current, next, nil
}

// gameServer stands in for sc-server: it answers KEYS with its current
// key and the next one, and can roll over to that next key.
type gameServer struct {
	ln   net.Listener
	addr string
	keys atomic.Pointer[[2]*ecdsa.PrivateKey] // current, next
}

func startGameServer() *gameServer {
	s := &gameServer{}
	s.keys.Store(&[2]*ecdsa.PrivateKey{newKey(), newKey()})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return selfSigned(s.keys.Load()[0])
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	s.ln, s.addr = ln, ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *gameServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		if _, err := r.Discard(int(binary.LittleEndian.Uint32(hdr[4:]))); err != nil {
			return
		}
		keys := s.keys.Load()
		cur, _ := pinning.PinOfPublicKey(keys[0].Public())
		next, _ := pinning.PinOfPublicKey(keys[1].Public())
		body := "current " + cur.String() + "\nnext " + next.String() + "\n"
		binary.LittleEndian.PutUint32(hdr[0:], typeKeys)
		binary.LittleEndian.PutUint32(hdr[4:], uint32(len(body)))
		if _, err := c.Write(append(hdr[:], body...)); err != nil {
			return
		}
	}
}

// rollOver moves to the announced next key, and announces a new next one.
func (s *gameServer) rollOver() {
	s.keys.Store(&[2]*ecdsa.PrivateKey{s.keys.Load()[1], newKey()})
}

// replaceKey moves to a key it never announced.
func (s *gameServer) replaceKey() {
	s.keys.Store(&[2]*ecdsa.PrivateKey{newKey(), newKey()})
}

func newKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	return k
}

func selfSigned(key *ecdsa.PrivateKey) (*tls.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "game server"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
