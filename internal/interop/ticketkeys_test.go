//go:build unix

package interop

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pki"
)

// Issue 5, "Done when": two real sc-server processes sharing one
// --ticket-keys file (made by sc-cert ticket-keys) resume each other's
// sessions, in TLS 1.2 and 1.3. When the file is rotated the session still
// resumes while its key is in the file, and for --ticket-key-rotation
// after the key left it; then the server drops the key and the same
// ticket gets a full handshake, on both servers, while new sessions
// resume across them again.
func TestTicketKeysAcrossServers(t *testing.T) {
	const window = 4 * time.Second
	dir := t.TempDir()
	tickets := filepath.Join(dir, "tickets")
	out := run(t, dir, bin(t, "sc-cert"), "ticket-keys", tickets)
	if !strings.Contains(out, "1 in all") {
		t.Errorf("sc-cert ticket-keys: %q", out)
	}
	if fi, err := os.Stat(tickets); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the ticket-key file: %v, %v; want mode 0600", fi, err)
	}
	args := []string{"--ticket-keys", tickets, "--ticket-key-rotation", window.String()}
	a := startSCServer(t, dir, args...)
	b := startSCServer(t, dir, args...) // the same certs/ too
	pool := x509.NewCertPool()
	ca, err := pki.ReadCertificateFile(filepath.Join(dir, "certs", pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool.AddCert(ca)

	versions := []uint16{tls.VersionTLS12, tls.VersionTLS13}
	// One session per version, made on a and kept: the first ticket each
	// got, never replaced by the tickets later connections bring.
	sessions := map[uint16]*firstTicketCache{}
	for _, v := range versions {
		t.Run(tls.VersionName(v)+" across servers", func(t *testing.T) {
			cache := &firstTicketCache{}
			if resumed(t, a, pool, v, cache) {
				t.Fatal("the first connection resumed")
			}
			if !resumed(t, b, pool, v, cache) {
				t.Error("a session from the first server did not resume on the second")
			}
			if !resumed(t, a, pool, v, cache) {
				t.Error("the session did not resume on the first server again")
			}
			sessions[v] = cache
		})
	}
	if len(sessions) != len(versions) {
		t.FailNow()
	}

	// rotate runs sc-cert ticket-keys and waits until both servers have
	// reloaded the file; it returns when the second did.
	const reloaded = `"msg":"ticket keys reloaded"`
	rotate := func() time.Time {
		t.Helper()
		na, nb := countLog(a, reloaded, `"trigger":"file-event"`), countLog(b, reloaded, `"trigger":"file-event"`)
		run(t, dir, bin(t, "sc-cert"), "ticket-keys", tickets)
		waitLog(t, a, na, 10*time.Second, reloaded, `"trigger":"file-event"`)
		waitLog(t, b, nb, 10*time.Second, reloaded, `"trigger":"file-event"`)
		return logTime(t, lastLine(a, reloaded))
	}
	// The ticket's key becomes the second of two: still in the file.
	rotate()
	for _, v := range versions {
		if !resumed(t, b, pool, v, sessions[v]) {
			t.Errorf("%s: the session did not resume while its key is still in the file", tls.VersionName(v))
		}
	}
	// The ticket's key leaves the file: it decrypts for the window more.
	left := rotate()
	for _, v := range versions {
		for _, s := range []*scServer{a, b} {
			if !resumed(t, s, pool, v, sessions[v]) {
				t.Errorf("%s: the session did not resume just after its key left the file (for %v more)", tls.VersionName(v), window)
			}
		}
	}
	// Then each server drops it, which it logs: a reload with nothing
	// retained.
	for _, s := range []*scServer{a, b} {
		waitLog(t, s, 0, window+10*time.Second, reloaded, `"retained":0`, `"trigger":"periodic"`)
		dropped := logTime(t, lastLine(s, `"retained":0`))
		if held := dropped.Sub(left); held < window-500*time.Millisecond {
			t.Errorf("a key that left the file was dropped after %v, want about %v", held, window)
		}
		for _, v := range versions {
			if resumed(t, s, pool, v, sessions[v]) {
				t.Errorf("%s: a ticket older than the retention window still resumed", tls.VersionName(v))
			}
		}
	}
	// New sessions resume across the servers under the new keys.
	for _, v := range versions {
		cache := &firstTicketCache{}
		if resumed(t, b, pool, v, cache) || !resumed(t, a, pool, v, cache) {
			t.Errorf("%s: a new session from the second server did not resume on the first", tls.VersionName(v))
		}
	}
}

// resumed connects to srv as v with the session cache, does an ECHO (so
// that a TLS 1.3 ticket, sent after the handshake, is read) and reports
// whether the session was resumed.
func resumed(t *testing.T, srv *scServer, pool *x509.CertPool, v uint16, cache tls.ClientSessionCache) bool {
	t.Helper()
	cfg := &tls.Config{RootCAs: pool, MinVersion: v, MaxVersion: v, ServerName: "localhost", ClientSessionCache: cache}
	c, err := client.Dial(context.Background(), srv.Addr, client.Options{TLSConfig: cfg})
	if err != nil {
		t.Fatalf("dialing %s: %v", srv.Addr, err)
	}
	defer c.Close()
	if _, err := c.Do(context.Background(), proto.Echo, []byte("x")); err != nil {
		t.Fatalf("ECHO: %v", err)
	}
	cs, _ := c.ConnectionState()
	return cs.DidResume
}

// firstTicketCache is a client session cache that keeps the first session
// it is given for each key, so that a test can offer the same (aging)
// ticket again and again; crypto/tls would replace it with every new
// ticket.
type firstTicketCache struct {
	mu sync.Mutex
	m  map[string]*tls.ClientSessionState
}

func (c *firstTicketCache) Get(key string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[key]
	return s, ok
}

func (c *firstTicketCache) Put(key string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*tls.ClientSessionState{}
	}
	if _, ok := c.m[key]; !ok && cs != nil {
		c.m[key] = cs
	}
}

// logTime returns the time of a JSON log line.
func logTime(t *testing.T, line string) time.Time {
	t.Helper()
	var rec struct {
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("log line %q: %v", line, err)
	}
	return rec.Time
}
