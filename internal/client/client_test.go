package client_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/internal/server"
	"github.com/spacecaptain/spacecaptain/internal/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func pinOf(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	return "sha256//" + base64.StdEncoding.EncodeToString(sum[:])
}

type mode struct {
	name    string
	tls     bool
	version uint16
}

var modes = []mode{{"TLS1.2", true, tls.VersionTLS12}, {"TLS1.3", true, tls.VersionTLS13}, {"plaintext", false, 0}}

// startServer runs a real server and returns its address and the client
// options that reach it.
func startServer(t testing.TB, m mode, opts server.Options) (string, client.Options) {
	t.Helper()
	var copts client.Options
	if m.tls {
		tcert := testutil.MustCert(t, testutil.CertOptions{})
		cert, pool := tcert.TLS, tcert.Pool
		opts.TLSConfig = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }}
		copts.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: m.version, MaxVersion: m.version}
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	srv, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-served
	})
	return ln.Addr().String(), copts
}

func mustDial(t testing.TB, addr string, opts client.Options) *client.Conn {
	t.Helper()
	c, err := client.Dial(context.Background(), addr, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDo(t *testing.T) {
	fixed := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	cur, next := pinOf("now"), []string{pinOf("later")}
	keys := proto.AppendKeys(nil, cur, next)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			addr, copts := startServer(t, m, server.Options{Now: func() time.Time { return fixed }, Keys: func() []byte { return keys }})
			c := mustDial(t, addr, copts)
			ctx := context.Background()
			tests := []struct {
				typ  proto.Type
				body string
				want string
			}{
				{proto.Echo, "hello", "hello"},
				{proto.Reverse, "añb", "bña"},
				{proto.Time, "", "2026-05-06T07:08:09Z"},
				{proto.Echo, "nul\x00", "nul\x00"},
				{proto.Reverse, "nul\x00", "lun\x00"},
				{proto.Time, "\x00", "2026-05-06T07:08:09Z\x00"},
			}
			for _, tt := range tests {
				got, err := c.Do(ctx, tt.typ, []byte(tt.body))
				if err != nil || string(got) != tt.want {
					t.Errorf("Do(%v, %q): got (%q, %v), want %q", tt.typ, tt.body, got, err, tt.want)
				}
			}
			gotCur, gotNext, err := c.Keys(ctx)
			if err != nil || gotCur != cur || !slices.Equal(gotNext, next) {
				t.Errorf("Keys: got (%q, %q, %v), want (%q, %q)", gotCur, gotNext, err, cur, next)
			}

			_, err = c.Do(ctx, 7, nil)
			var se *client.ServerError
			if !errors.As(err, &se) || se.Type != 7 || se.Reason != "unknown message type 7" {
				t.Fatalf("unknown type: got %v, want a ServerError", err)
			}
			if got, err := c.Do(ctx, proto.Echo, []byte("after")); err != nil || string(got) != "after" {
				t.Errorf("after the ERROR: got (%q, %v), want the connection to go on", got, err)
			}

			state, ok := c.ConnectionState()
			if ok != m.tls || (m.tls && state.Version != m.version) {
				t.Errorf("ConnectionState: got version %x, %v; want %x, %v", state.Version, ok, m.version, m.tls)
			}
		})
	}
}

func TestPipelined(t *testing.T) {
	const n = 1000
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			addr, copts := startServer(t, m, server.Options{})
			c := mustDial(t, addr, copts)
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			for i := range n {
				if err := c.Send(proto.Echo, []byte(strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				f, err := c.Receive()
				if err != nil {
					t.Fatalf("reply %d: %v", i, err)
				}
				if f.Type != proto.Echo || string(f.Body) != strconv.Itoa(i) {
					t.Fatalf("reply %d: got (%v, %q), want it in order", i, f.Type, f.Body)
				}
			}
		})
	}
}

// One goroutine sends and flushes while another reads the replies with
// ReadReply, as sc-client chat does; under -race this also checks that
// ReadReply does not touch the send buffer.
func TestPipelinedConcurrentReader(t *testing.T) {
	const n = 2000
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			addr, copts := startServer(t, m, server.Options{})
			c := mustDial(t, addr, copts)
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			got := make(chan error, 1)
			go func() {
				for i := range n {
					f, err := c.ReadReply()
					if err != nil {
						got <- fmt.Errorf("reply %d: %w", i, err)
						return
					}
					if f.Type != proto.Reverse || string(f.Body) != "x"+strconv.Itoa(i) {
						got <- fmt.Errorf("reply %d: got (%v, %q), want it in order", i, f.Type, f.Body)
						return
					}
				}
				got <- nil
			}()
			for i := range n {
				if err := c.Send(proto.Reverse, []byte(reverse(strconv.Itoa(i))+"x")); err != nil {
					t.Fatal(err)
				}
				if i%7 == 0 {
					if err := c.Flush(); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := <-got; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

func TestKeysNotSupported(t *testing.T) {
	addr, copts := startServer(t, modes[1], server.Options{})
	c := mustDial(t, addr, copts)
	_, _, err := c.Keys(context.Background())
	var se *client.ServerError
	if !errors.As(err, &se) || se.Type != proto.Keys || !strings.Contains(se.Reason, "not supported") {
		t.Fatalf("got %v, want a ServerError saying KEYS is not supported", err)
	}
}

func TestDoContext(t *testing.T) {
	release := make(chan struct{})
	addr, copts := startServer(t, modes[1], server.Options{Keys: func() []byte { <-release; return []byte("x") }})
	t.Cleanup(func() { close(release) }) // before the server's Shutdown
	c := mustDial(t, addr, copts)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Do(ctx, proto.Keys, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	c2 := mustDial(t, addr, copts)
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := c2.Do(ctx, proto.Keys, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestSendTooLarge(t *testing.T) {
	addr, copts := startServer(t, modes[2], server.Options{})
	copts.MaxMessage = 10
	c := mustDial(t, addr, copts)
	if err := c.Send(proto.Echo, make([]byte, 11)); !errors.Is(err, client.ErrBodyTooLarge) {
		t.Fatalf("got %v, want ErrBodyTooLarge", err)
	}
	if got, err := c.Do(context.Background(), proto.Echo, []byte("0123456789")); err != nil || string(got) != "0123456789" {
		t.Fatalf("got (%q, %v) for a body at the maximum", got, err)
	}
}

func TestDialErrors(t *testing.T) {
	t.Run("untrusted certificate", func(t *testing.T) {
		addr, _ := startServer(t, modes[1], server.Options{})
		otherPool := testutil.MustCert(t, testutil.CertOptions{}).Pool
		_, err := client.Dial(context.Background(), addr, client.Options{TLSConfig: &tls.Config{RootCAs: otherPool}})
		var ve *tls.CertificateVerificationError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), addr) {
			t.Fatalf("got %v, want a certificate verification error naming %s", err, addr)
		}
	})
	t.Run("nothing listening", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if _, err := client.Dial(context.Background(), addr, client.Options{}); err == nil {
			t.Fatal("got a connection to a closed port")
		}
	})
	t.Run("handshake timeout", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				accepted <- c // and say nothing
			}
			close(accepted)
		}()
		began := time.Now()
		_, err = client.Dial(context.Background(), ln.Addr().String(), client.Options{
			TLSConfig: &tls.Config{}, Timeout: 200 * time.Millisecond})
		if err == nil || time.Since(began) > 5*time.Second {
			t.Fatalf("got %v after %v, want a timeout after about 200ms", err, time.Since(began))
		}
		if c := <-accepted; c != nil {
			c.Close()
		}
	})
}

// fakeServer answers the first request with raw bytes.
func fakeServer(t *testing.T, reply []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := proto.NewDecoder(c, 0).Next(); err != nil {
			return // (unread input at close would reset the connection)
		}
		_, _ = c.Write(reply) // then close: a cut reply ends there
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func TestBadReplies(t *testing.T) {
	tests := []struct {
		name     string
		keys     bool
		reply    []byte
		wantKind string
	}{
		{"wrong type", false, proto.AppendFrame(nil, proto.Time, []byte("x")), proto.KindUnexpectedReply},
		{"over the maximum", false, []byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, proto.KindTooLarge},
		{"truncated", false, []byte{0, 0, 0, 0, 5, 0, 0, 0, 'a'}, proto.KindTruncated},
		{"bad KEYS body", true, proto.AppendFrame(nil, proto.Keys, []byte("current nope\n")), proto.KindBadKeys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := fakeServer(t, tt.reply)
			c := mustDial(t, addr, client.Options{})
			var err error
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if tt.keys {
				_, _, err = c.Keys(ctx)
			} else {
				_, err = c.Do(ctx, proto.Echo, []byte("x"))
			}
			var pe *proto.ProtocolError
			if !errors.As(err, &pe) || pe.Kind != tt.wantKind {
				t.Fatalf("got %v, want a ProtocolError of kind %s", err, tt.wantKind)
			}
		})
	}
}
