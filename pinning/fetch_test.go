package pinning

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"
)

func TestFetchChain(t *testing.T) {
	ca := mustCA(t)
	key := mustKey(t)
	leaf := ca.issue(t, key, certSpec{})
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			srv := startServer(t, serverSpec{cert: tlsCert(key, leaf, ca.cert), version: v.v})
			tests := []struct {
				name       string
				serverName string
				wantSNI    string
			}{
				// crypto/tls sends no SNI for an IP address (RFC 6066).
				{"IP address", "", ""},
				{"server name", "localhost", "localhost"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					chain, state, err := FetchChain(context.Background(), srv.addr, FetchOptions{ServerName: tt.serverName})
					if err != nil {
						t.Fatal(err)
					}
					if got := <-srv.hellos; got != tt.wantSNI {
						t.Errorf("SNI: got %q, want %q", got, tt.wantSNI)
					}
					if len(chain) != 2 {
						t.Fatalf("got %d certificates, want 2", len(chain))
					}
					if !chain[0].Equal(leaf) || !chain[1].Equal(ca.cert) {
						t.Error("got a chain other than the one the server presented")
					}
					if got, want := PinOf(chain[0]), PinOf(leaf); !got.Equal(want) {
						t.Errorf("leaf pin: got %v, want %v", got, want)
					}
					if state.Version != v.v {
						t.Errorf("version: got %x, want %x", state.Version, v.v)
					}
					if !state.HandshakeComplete {
						t.Error("got HandshakeComplete false after a successful fetch")
					}
					if len(state.VerifiedChains) != 0 {
						t.Error("got verified chains: FetchChain must not verify")
					}
				})
			}
		})
	}
}

// A server that demands a client certificate still shows its chain: under
// TLS 1.2 the handshake fails after the server's certificates arrived, and
// FetchChain returns them with the error; under TLS 1.3 the client's side of
// the handshake completes before the server checks the client.
func TestFetchChainClientCertRequired(t *testing.T) {
	key := mustKey(t)
	leaf := mustLeaf(t, key)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			srv := startServer(t, serverSpec{cert: tlsCert(key, leaf), version: v.v, clientAuth: tls.RequireAnyClientCert})
			chain, state, err := FetchChain(context.Background(), srv.addr, FetchOptions{})
			if v.v == tls.VersionTLS12 {
				if err == nil {
					t.Fatal("got no error, want the handshake to fail without a client certificate")
				}
				if state.HandshakeComplete {
					t.Error("got HandshakeComplete true with a failed handshake")
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if len(chain) != 1 || !chain[0].Equal(leaf) {
				t.Fatalf("got %d certificates (err %v), want the server's leaf", len(chain), err)
			}
		})
	}
}

func TestFetchChainTimeout(t *testing.T) {
	// A server that accepts and then never speaks.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		select {
		case c := <-accepted:
			c.Close()
		default:
		}
	})

	start := time.Now()
	chain, _, err := FetchChain(context.Background(), ln.Addr().String(), FetchOptions{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got error %v, want one matching context.DeadlineExceeded", err)
	}
	if chain != nil {
		t.Error("got a chain from a silent server")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v, want about the 200ms timeout", d)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := FetchChain(ctx, ln.Addr().String(), FetchOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: got error %v, want one matching context.Canceled", err)
	}
}

func TestFetchChainVersionBounds(t *testing.T) {
	key := mustKey(t)
	srv := startServer(t, serverSpec{cert: tlsCert(key, mustLeaf(t, key)), version: tls.VersionTLS13})
	_, _, err := FetchChain(context.Background(), srv.addr, FetchOptions{MaxVersion: tls.VersionTLS12})
	if err == nil {
		t.Error("got no error offering only TLS 1.2 to a TLS 1.3-only server")
	}
}
