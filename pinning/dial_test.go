package pinning

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// DialContext records on first use, so that a second key for the same
// address is refused: with tls.Dial and no Record, both were accepted and
// the store was never created (issue 13).
func TestDialRecords(t *testing.T) {
	key, otherKey := mustKey(t), mustKey(t)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			srv := startServer(t, serverSpec{cert: tlsCert(key, mustLeaf(t, key)), version: v.v})
			path := filepath.Join(t.TempDir(), "known_hosts")
			tr := mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: mustStore(t, path, nil), Host: srv.addr})

			conn, err := tr.DialContext(context.Background(), "tcp", srv.addr)
			if err != nil {
				t.Fatal(err)
			}
			conn.Close()
			e, ok, err := mustStore(t, path, nil).Lookup(srv.addr)
			if err != nil || !ok || len(e.Pins) != 1 || !e.Pins[0].Pin.Equal(mustPinOfKey(t, key)) || !e.Pins[0].Current {
				t.Fatalf("after the first dial: got %+v, %v, %v, want %s with the server's key as current", e, ok, err, srv.addr)
			}
			before := mustRead(t, path)

			srv.setCert(tlsCert(otherKey, mustLeaf(t, otherKey)))
			conn, err = tr.Dial("tcp", srv.addr)
			var ke *KeyError
			if !errors.As(err, &ke) || conn != nil {
				t.Fatalf("another key: got %v, %v, want a nil connection and a *KeyError", conn, err)
			}
			if !ke.Got.Equal(mustPinOfKey(t, otherKey)) || ke.Path != path {
				t.Errorf("got %+v, want the other key and the store's path", ke)
			}
			if mustRead(t, path) != before {
				t.Error("a refused dial changed the store")
			}
		})
	}
}

// A record that fails closes the connection: an unwritable store means
// the key of a first use would go unrecorded. The store's directory is a
// file, which stops root too.
func TestDialRecordFails(t *testing.T) {
	key := mustKey(t)
	srv := startServer(t, serverSpec{cert: tlsCert(key, mustLeaf(t, key))})
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tr := mustTrust(t, TrustOptions{Mode: ModeTOFU, Store: mustStore(t, filepath.Join(file, "known_hosts"), nil), Host: srv.addr})
	conn, err := tr.Dial("tcp", srv.addr)
	if err == nil || conn != nil {
		t.Fatalf("got %v, %v, want an error and no connection", conn, err)
	}
}

// A Trust for one host does not dial another: it would check and record
// the other server's key under its Host.
func TestDialOtherHost(t *testing.T) {
	key := mustKey(t)
	srv := startServer(t, serverSpec{cert: tlsCert(key, mustLeaf(t, key))})
	tr := mustTrust(t, TrustOptions{Mode: ModePin, Pins: mustSet(t, mustPinOfKey(t, key)), Host: "game.example:4242"})
	if _, err := tr.Dial("tcp", srv.addr); err == nil || !strings.Contains(err.Error(), "game.example:4242") {
		t.Fatalf("got %v, want a refusal naming game.example:4242", err)
	}
	// Its own host, in another spelling, is fine.
	_, port, _ := net.SplitHostPort(srv.addr)
	tr = mustTrust(t, TrustOptions{Mode: ModePin, Pins: mustSet(t, mustPinOfKey(t, key)), Host: "[::ffff:127.0.0.1]:" + port})
	conn, err := tr.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}
