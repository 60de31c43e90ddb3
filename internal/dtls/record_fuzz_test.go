package dtls

import (
	"bytes"
	"testing"
)

// FuzzRecord feeds the front end's datagram readers (record.go) any bytes:
// they never panic, what they return lies inside the datagram, and a first
// ClientHello given a cookie reads back with that cookie (the round trip
// the cookie exchange depends on).
func FuzzRecord(f *testing.F) {
	f.Add(captureClientHello(f))
	f.Add([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 35, 3, 0, 0, 23, 0, 0, 0, 0, 0, 0, 0, 23, 0xfe, 0xff, 20})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, d []byte) {
		inside := func(what string, b []byte) {
			if len(b) > 0 && !bytes.Contains(d, b) {
				t.Fatalf("%s returned %x, not part of the datagram", what, b)
			}
		}
		if c, ok := clientHelloCookie(d); ok {
			inside("clientHelloCookie", c)
			if len(c) > 255 {
				t.Fatalf("a cookie of %d bytes", len(c))
			}
			if len(c) == 0 {
				cookie := []byte("0123456789abcdefghij")
				got, ok := clientHelloCookie(withCookie(t, d, cookie))
				if !ok || !bytes.Equal(got, cookie) {
					t.Fatalf("the ClientHello given a cookie reads back %x (%v), want %x", got, ok, cookie)
				}
			}
		}
		if c, ok := helloVerifyCookie(d); ok {
			inside("helloVerifyCookie", c)
		}
	})
}
