package server

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/testutil"
)

func TestNewValidates(t *testing.T) {
	cert := testutil.MustCert(t, testutil.CertOptions{}).TLS
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "zero is plaintext with defaults", opts: Options{}},
		{name: "tls via GetCertificate", opts: Options{TLSConfig: serverTLS(cert)}},
		{name: "unknown engine", opts: Options{Engine: "threads"}, wantErr: `unknown engine "threads"`},
		{name: "negative max conns", opts: Options{MaxConns: -1}, wantErr: "max conns"},
		{name: "max message too large", opts: Options{MaxMessage: MaxMessageLimit + 1}, wantErr: "max message"},
		{name: "negative max message", opts: Options{MaxMessage: -5}, wantErr: "max message"},
		{name: "negative handshake timeout", opts: Options{HandshakeTimeout: -time.Second}, wantErr: "handshake timeout"},
		{name: "negative idle timeout", opts: Options{IdleTimeout: -time.Second}, wantErr: "idle timeout"},
		{name: "negative write timeout", opts: Options{WriteTimeout: -time.Second}, wantErr: "write timeout"},
		{name: "static certificates", opts: Options{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}, wantErr: "sets Certificates"},
		{name: "no certificate", opts: Options{TLSConfig: &tls.Config{}}, wantErr: "no certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewDefaultsAndConfig(t *testing.T) {
	cert := testutil.MustCert(t, testutil.CertOptions{}).TLS
	cfg := serverTLS(cert)
	cfg.DynamicRecordSizingDisabled = false
	s, err := New(Options{TLSConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	o := s.opts
	if o.MaxConns != DefaultMaxConns || o.MaxMessage != proto.DefaultMaxBody || o.HandshakeTimeout != DefaultHandshakeTimeout ||
		o.IdleTimeout != DefaultIdleTimeout || o.WriteTimeout != DefaultWriteTimeout || o.Engine != Engines()[0] {
		t.Errorf("got defaults %+v", o)
	}
	// The server uses the caller's config itself, so that
	// SetSessionTicketKeys on it reaches the server, and leaves it as given.
	if s.tlsConfig != cfg {
		t.Error("the server uses a copy of the tls.Config, want the caller's own")
	}
	if cfg.DynamicRecordSizingDisabled {
		t.Error("New changed the caller's tls.Config, want it untouched")
	}
}

// SetSessionTicketKeys on the caller's config, the one mutation allowed on
// a live config, reaches the running server: a session ticket issued under
// the old keys no longer resumes.
func TestSetSessionTicketKeysReachesServer(t *testing.T) {
	for _, m := range []mode{modeTLS12, modeTLS13} {
		t.Run(m.name, func(t *testing.T) {
			tcert := testutil.MustCert(t, testutil.CertOptions{})
			cert, pool := tcert.TLS, tcert.Pool
			cfg := serverTLS(cert)
			var k1, k2 [32]byte
			k1[0], k2[0] = 1, 2
			cfg.SetSessionTicketKeys([][32]byte{k1})
			e := start(t, Engines()[0], m, Options{TLSConfig: cfg})
			cache := tls.NewLRUClientSessionCache(4)
			client := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: m.version, MaxVersion: m.version, ClientSessionCache: cache}
			resumed := func() bool {
				t.Helper()
				tc := tls.Client(e.dialRaw(), client)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				// A TLS 1.3 ticket arrives after the handshake: a round
				// trip makes sure the client has read it.
				if f := roundTrip(t, tc, proto.Echo, []byte("x")); string(f.Body) != "x" {
					t.Fatalf("echo: got %q", f.Body)
				}
				st := tc.ConnectionState()
				tc.Close()
				return st.DidResume
			}
			if resumed() {
				t.Fatal("first connection resumed a session")
			}
			if !resumed() {
				t.Fatal("second connection did not resume: session tickets are off")
			}
			cfg.SetSessionTicketKeys([][32]byte{k2})
			if resumed() {
				t.Error("resumed with a ticket sealed under replaced keys: SetSessionTicketKeys did not reach the server")
			}
			if !resumed() {
				t.Error("no resumption under the new keys")
			}
		})
	}
}

func TestMessages(t *testing.T) {
	fixed := time.Date(2026, 7, 1, 12, 30, 45, 0, time.UTC)
	keys := proto.AppendKeys(nil, "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", nil)
	forEach(t, allModes, func(t *testing.T, engine string, m mode) {
		e := start(t, engine, m, Options{Now: func() time.Time { return fixed }, Keys: func() []byte { return keys }})
		c := e.dial()
		tests := []struct {
			name     string
			typ      proto.Type
			body     string
			wantType proto.Type
			want     string
		}{
			{"echo", proto.Echo, "hello", proto.Echo, "hello"},
			{"echo empty", proto.Echo, "", proto.Echo, ""},
			{"echo maximum", proto.Echo, strings.Repeat("m", proto.DefaultMaxBody), proto.Echo, strings.Repeat("m", proto.DefaultMaxBody)},
			{"reverse", proto.Reverse, "añb€😀", proto.Reverse, "😀€bña"},
			{"reverse bytes", proto.Reverse, "a\xffb", proto.Reverse, "b\xffa"},
			{"time", proto.Time, "", proto.Time, "2026-07-01T12:30:45Z"},
			{"keys", proto.Keys, "", proto.Keys, string(keys)},
			{"echo NUL", proto.Echo, "hello\x00", proto.Echo, "hello\x00"},
			{"reverse NUL", proto.Reverse, "hello\x00", proto.Reverse, "olleh\x00"},
			{"time NUL", proto.Time, "\x00", proto.Time, "2026-07-01T12:30:45Z\x00"},
			{"unknown type", 7, "x", proto.Error, "unknown message type 7"},
			{"echo after unknown", proto.Echo, "on", proto.Echo, "on"},
		}
		for _, tt := range tests {
			f := roundTrip(t, c, tt.typ, []byte(tt.body))
			if f.Type != tt.wantType || string(f.Body) != tt.want {
				t.Errorf("%s: got (%v, %.40q), want (%v, %.40q)", tt.name, f.Type, f.Body, tt.wantType, tt.want)
			}
		}
		if m.tls {
			state := c.(*tls.Conn).ConnectionState()
			if state.Version != m.version {
				t.Errorf("got TLS version %x, want %x", state.Version, m.version)
			}
		}
		e.rec.waitFor(t, "message events", 5*time.Second, func() bool {
			return e.rec.messages[proto.Echo] == 5 && e.rec.messages[proto.Reverse] == 3 && e.rec.messages[proto.Time] == 2 &&
				e.rec.messages[proto.Keys] == 1 && e.rec.protoErrs[proto.KindUnknownType] == 1
		})
	})
}

func TestKeysNotSupported(t *testing.T) {
	forEach(t, []mode{modeTLS13}, func(t *testing.T, engine string, m mode) {
		e := start(t, engine, m, Options{})
		f := roundTrip(t, e.dial(), proto.Keys, nil)
		if f.Type != proto.Error || string(f.Body) != "KEYS not supported" {
			t.Errorf("got (%v, %q), want an ERROR saying KEYS is not supported", f.Type, f.Body)
		}
	})
}

func TestPipelined(t *testing.T) {
	const n = 1000
	forEach(t, allModes, func(t *testing.T, engine string, m mode) {
		e := start(t, engine, m, Options{})
		c := e.dial()
		var batch []byte
		for i := range n {
			typ := proto.Type(i % 2) // ECHO and REVERSE alternate
			batch = proto.AppendFrame(batch, typ, []byte(strings.Repeat("x", i%50)+"#"+strconv.Itoa(i)))
		}
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		errc := make(chan error, 1)
		go func() { _, err := c.Write(batch); errc <- err }()
		for i := range n {
			f := receive(t, c)
			want := []byte(strings.Repeat("x", i%50) + "#" + strconv.Itoa(i))
			if i%2 == 1 {
				want = reverse(want)
			}
			if f.Type != proto.Type(i%2) || !bytes.Equal(f.Body, want) {
				t.Fatalf("reply %d: got (%v, %q), want (%v, %q)", i, f.Type, f.Body, proto.Type(i%2), want)
			}
		}
		if err := <-errc; err != nil {
			t.Fatalf("writing the batch: %v", err)
		}
	})
}

func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[len(b)-1-i] = c
	}
	return out
}

// TestIdleHoldsNoBuffers checks that a connection that has been served and
// waits for its next request holds none of the server's buffers.
func TestIdleHoldsNoBuffers(t *testing.T) {
	forEach(t, []mode{modeTLS13, modePlaintext}, func(t *testing.T, engine string, m mode) {
		idle := make(chan bool, 100)
		e := start(t, engine, m, Options{}, func(s *Server) {
			// On c's owner, which alone may look at c's buffers.
			s.testIdle = func(c *conn) { idle <- c.in != nil }
		})
		for i := range 20 {
			c := e.dial()
			<-idle // the first wait, before any request
			roundTrip(t, c, proto.Echo, bytes.Repeat([]byte("b"), 4000))
			if held := <-idle; held {
				t.Fatalf("connection %d went idle holding an input buffer, want none", i)
			}
		}
	})
}

func TestServeAfterShutdown(t *testing.T) {
	s, err := New(Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown of an idle server: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(t.Context(), ln); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("got %v, want ErrServerClosed", err)
	}
}
