package pinning

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"testing"
)

// benchStore returns a store of n hosts plus host, whose current pin is the
// leaf's, and a completed connection state presenting leaf.
func benchStore(b *testing.B, n int) (*Store, string, tls.ConnectionState) {
	b.Helper()
	s := mustStore(b, filepath.Join(b.TempDir(), "known_hosts"), nil)
	for i := range n {
		if err := s.Add(fmt.Sprintf("host%d.example:4242", i), PinOfSPKI([]byte{byte(i), byte(i >> 8)})); err != nil {
			b.Fatal(err)
		}
	}
	leaf := mustLeaf(b, mustKey(b))
	host := "127.0.0.1:4242"
	if err := s.Add(host, PinOf(leaf)); err != nil {
		b.Fatal(err)
	}
	return s, host, tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{leaf}}
}

// BenchmarkTOFUVerify is what trust on first use adds to every handshake:
// reading and parsing the store to check the key.
func BenchmarkTOFUVerify(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			s, host, cs := benchStore(b, n)
			tr := mustTrust(b, TrustOptions{Mode: ModeTOFU, Store: s, Host: host})
			b.ResetTimer()
			for b.Loop() {
				if err := tr.verifyConnection(cs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRecordUnchanged is Record after a handshake with a known key
// seen less than lastSeenResolution ago: a read, no lock, no write.
func BenchmarkRecordUnchanged(b *testing.B) {
	s, host, cs := benchStore(b, 10)
	tr := mustTrust(b, TrustOptions{Mode: ModeTOFU, Store: s, Host: host})
	if _, err := tr.Record(cs); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := tr.Record(cs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStoreAdd is one locked read-modify-write with fsync and rename.
func BenchmarkStoreAdd(b *testing.B) {
	s, _, _ := benchStore(b, 10)
	i := 0
	for b.Loop() {
		i++
		if err := s.Add(fmt.Sprintf("new%d.example:1", i), PinOfSPKI([]byte(fmt.Sprint(i)))); err != nil {
			b.Fatal(err)
		}
	}
}
