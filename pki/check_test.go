package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestLoadPairChecks(t *testing.T) {
	r := mustInit(t, InitOptions{})
	l := r.Layout
	now := time.Now()
	tests := []struct {
		name      string
		cert, key string
		opts      LoadOptions
		check     func(error) bool
		wantMsg   string
	}{
		{"good pair", l.ServerCert, l.ServerKey, LoadOptions{}, func(err error) bool { return err == nil }, ""},
		{"mismatched pair", l.ServerCert, l.NextKey, LoadOptions{},
			func(err error) bool { return errors.Is(err, ErrKeyMismatch) }, "belongs to another certificate"},
		{"swapped paths", l.ServerKey, l.ServerCert, LoadOptions{},
			func(err error) bool { return errors.Is(err, ErrNoCertificate) }, "paths may be swapped"},
		{"key where the cert should be, cert right", l.ServerKey, l.ServerKey, LoadOptions{},
			func(err error) bool { return errors.Is(err, ErrNoCertificate) }, "server.key"},
		{"expired", l.ServerCert, l.ServerKey, LoadOptions{Now: func() time.Time { return now.AddDate(1, 0, 0) }},
			func(err error) bool {
				var e *ExpiredError
				return errors.As(err, &e) && e.NotAfter.Equal(r.Server.NotAfter) && e.Path == l.ServerCert
			}, "expired at"},
		{"not yet valid", l.ServerCert, l.ServerKey, LoadOptions{Now: func() time.Time { return now.Add(-time.Hour) }},
			func(err error) bool {
				var e *NotYetValidError
				return errors.As(err, &e)
			}, "check the clock"},
		{"expires soon", l.ServerCert, l.ServerKey, LoadOptions{MinRemaining: 100 * 24 * time.Hour},
			func(err error) bool {
				var e *ExpiresSoonError
				return errors.As(err, &e) && e.Remaining > 89*24*time.Hour
			}, "less than the"},
		{"expired but allowed", l.ServerCert, l.ServerKey, LoadOptions{AllowInvalidTime: true, Now: func() time.Time { return now.AddDate(1, 0, 0) }},
			func(err error) bool { return err == nil }, ""},
		{"missing key", l.ServerCert, filepath.Join(l.Dir, "nope.key"), LoadOptions{},
			func(err error) bool { return err != nil }, "nope.key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := LoadPair(tt.cert, tt.key, tt.opts)
			if !tt.check(err) || (err != nil && !strings.Contains(err.Error(), tt.wantMsg)) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantMsg)
			}
			if err == nil && p.Leaf().SerialNumber.Cmp(r.Server.SerialNumber) != 0 {
				t.Error("loaded another certificate")
			}
		})
	}
}

// The loaded pair serves real TLS, 1.2 and 1.3, and a client that trusts
// ca.crt accepts it.
func TestPairServesTLS(t *testing.T) {
	for _, kt := range []KeyType{KeyECDSAP256, KeyRSA2048, KeyEd25519} {
		r := mustInit(t, InitOptions{KeyType: kt})
		p, err := LoadPair(r.Layout.ServerCert, r.Layout.ServerKey, LoadOptions{Key: KeyOptions{RequirePrivateFile: true}})
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(r.CA)
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(kt.String()+"/"+tls.VersionName(v), func(t *testing.T) {
				ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*p.TLSCertificate()}, MinVersion: v, MaxVersion: v})
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				done := make(chan error, 1)
				go func() {
					c, err := ln.Accept()
					if err == nil {
						err = c.(*tls.Conn).Handshake()
						c.Close()
					}
					done <- err
				}()
				d := tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: v, MaxVersion: v}}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				c.Close()
				if err := <-done; err != nil {
					t.Errorf("server side: %v", err)
				}
			})
		}
	}
}

func TestLoadPairAndServingMode(t *testing.T) {
	r := mustInit(t, InitOptions{})
	l := r.Layout
	p, err := LoadPair(l.ServerCert, l.ServerKey, LoadOptions{})
	if err != nil || p.Leaf().SerialNumber.Cmp(r.Server.SerialNumber) != 0 {
		t.Fatalf("got %v", err)
	}
	if _, err := LoadPair(l.ServerCert, l.NextKey, LoadOptions{}); !errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), l.NextKey) {
		t.Errorf("mismatch: got %v", err)
	}
	if runtime.GOOS == "windows" {
		return
	}
	if err := os.Chmod(l.ServerKey, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPair(l.ServerCert, l.ServerKey, LoadOptions{Key: KeyOptions{RequirePrivateFile: true}}); !errors.Is(err, ErrKeyFilePermissions) {
		t.Errorf("group-readable key for serving: got %v, want ErrKeyFilePermissions", err)
	}
	if _, err := LoadPair(l.ServerCert, l.ServerKey, LoadOptions{}); err != nil {
		t.Errorf("group-readable key without the check: %v", err)
	}
}
