package server

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// Issue 8, scale-out: the PROXY protocol from trusted balancers.

var (
	testClient4 = &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 51000}
	testClient6 = &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 51001}
	testServer4 = &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 4242}
	testServer6 = &net.TCPAddr{IP: net.ParseIP("2001:db8:1::1"), Port: 4242}
)

// mustHeader formats a PROXY protocol header with go-proxyproto.
func mustHeader(t testing.TB, h *proxyproto.Header) []byte {
	t.Helper()
	b, err := h.Format()
	if err != nil {
		t.Fatalf("formatting %+v: %v", h, err)
	}
	return b
}

func headerV1(t testing.TB, src, dst *net.TCPAddr) []byte {
	return mustHeader(t, proxyproto.HeaderProxyFromAddrs(1, src, dst))
}

func headerV2(t testing.TB, src, dst *net.TCPAddr) []byte {
	return mustHeader(t, proxyproto.HeaderProxyFromAddrs(2, src, dst))
}

func headerLocal(t testing.TB) []byte {
	return mustHeader(t, &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC})
}

func TestReadProxyHeader(t *testing.T) {
	rest := []byte("\x16\x03\x01\x00\xc8 the ClientHello")
	withTLVs := proxyproto.HeaderProxyFromAddrs(2, testClient4, testServer4)
	if err := withTLVs.SetTLVs([]proxyproto.TLV{{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("game.example")}}); err != nil {
		t.Fatal(err)
	}
	udp := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UDPv4,
		SourceAddr: &net.UDPAddr{IP: testClient4.IP, Port: 1}, DestinationAddr: &net.UDPAddr{IP: testServer4.IP, Port: 2}}
	tests := []struct {
		name    string
		in      []byte
		want    string // the client's address; "" for the socket's own
		wantErr string // part of the error, when one is expected
	}{
		// The stream ends where the input does (no ClientHello behind it).
		{"v1 truncated", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 510"), "", "unexpected EOF"},
		{"v2 truncated", headerV2(t, testClient4, testServer4)[:20], "", "unexpected EOF"},
		{"empty", nil, "", "EOF"},
		// The rest have a ClientHello behind them.
		{"v1 TCP4", headerV1(t, testClient4, testServer4), "192.0.2.7:51000", ""},
		{"v1 TCP6", headerV1(t, testClient6, testServer6), "[2001:db8::7]:51001", ""},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), "", ""},
		{"v1 UNKNOWN with addresses", []byte("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"), "", ""},
		{"v1 shortest TCP6", []byte("PROXY TCP6 :: :: 1 2\r\n"), "[::]:1", ""},
		{"v2 TCP4", headerV2(t, testClient4, testServer4), "192.0.2.7:51000", ""},
		{"v2 TCP6", headerV2(t, testClient6, testServer6), "[2001:db8::7]:51001", ""},
		{"v2 with TLVs", mustHeader(t, withTLVs), "192.0.2.7:51000", ""},
		{"v2 LOCAL", headerLocal(t), "", ""},
		{"no header: a ClientHello", rest, "", "send-proxy-v2"},
		{"no header: HTTP", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "", "neither"},
		{"v1 bare LF", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 51000 4242\n\x16\x03"), "", "CRLF"},
		{"v1 too long", []byte("PROXY TCP4 " + strings.Repeat("1", 200) + "\r\n"), "", "longer than 107"},
		{"v1 bad address", []byte("PROXY TCP4 192.0.2.x 198.51.100.1 51000 4242\r\n"), "", "invalid address"},
		{"v2 too long", append(append([]byte{}, proxyV2Sig...), 0x21, 0x11, 0xff, 0xff), "", "more than 4096"},
		{"v2 UDP", mustHeader(t, udp), "", "not TCP"},
		{"v2 bad version", append(append([]byte{}, proxyV2Sig...), 0x31, 0x11, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12), "", "unsupported"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]byte{}, tt.in...)
			if i >= 3 {
				in = append(in, rest...)
			}
			for _, r := range []struct {
				name string
				r    func(io.Reader) io.Reader
			}{{"whole", func(r io.Reader) io.Reader { return r }}, {"byte by byte", iotest.OneByteReader}} {
				br := bytes.NewReader(in)
				b, err := readProxyHeader(r.r(br))
				var client net.Addr
				if err == nil {
					if !bytes.Equal(b, tt.in) {
						t.Fatalf("%s: read % x, want the header alone, % x", r.name, b, tt.in)
					}
					if got := in[len(in)-br.Len():]; !bytes.Equal(got, rest) {
						t.Fatalf("%s: left %q unread, want %q", r.name, got, rest)
					}
					var h *proxyproto.Header
					if h, err = parseProxyHeader(b); err == nil {
						client, err = proxyClient(h)
					}
				}
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("%s: got error %v, want one with %q", r.name, err, tt.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", r.name, err)
				}
				got := ""
				if client != nil {
					got = client.String()
				}
				if got != tt.want {
					t.Errorf("%s: client %q, want %q", r.name, got, tt.want)
				}
			}
		})
	}
}

// FuzzReadProxyHeader: no input makes the header reader panic, read past
// the header it returns or return one over the limits; what it returns
// and go-proxyproto accepts, formatted again, reads back as the same
// header with the bytes behind it untouched.
func FuzzReadProxyHeader(f *testing.F) {
	f.Add(headerV1(f, testClient4, testServer4))
	f.Add(headerV1(f, testClient6, testServer6))
	f.Add(headerV2(f, testClient4, testServer4))
	f.Add(headerV2(f, testClient6, testServer6))
	f.Add(headerLocal(f))
	f.Add([]byte("PROXY UNKNOWN\r\n\x16\x03\x01"))
	f.Add([]byte("\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03"))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bytes.NewReader(in)
		b, err := readProxyHeader(br)
		if err != nil {
			return
		}
		if len(b) > proxyV2Fixed+proxyV2MaxLen {
			t.Fatalf("read a %d-byte header", len(b))
		}
		if !bytes.Equal(b, in[:len(b)]) || br.Len() != len(in)-len(b) {
			t.Fatalf("read %d bytes of %d, returned %d: not exactly the header", len(in)-br.Len(), len(in), len(b))
		}
		h, err := parseProxyHeader(b)
		if err != nil {
			return
		}
		_, _ = proxyClient(h)
		again, err := h.Format()
		if err != nil {
			return // go-proxyproto cannot write every header it reads (v1 UNKNOWN with addresses)
		}
		tail := []byte("\x16\x03\x01tail")
		br = bytes.NewReader(append(again, tail...))
		b2, err := readProxyHeader(br)
		if err != nil {
			t.Fatalf("reading back %q (from %q): %v", again, b, err)
		}
		h2, err := parseProxyHeader(b2)
		if err != nil {
			t.Fatalf("parsing back %q (from %q): %v", again, b, err)
		}
		if !h2.EqualsTo(h) {
			t.Fatalf("round trip: %+v, want %+v", h2, h)
		}
		if rest, _ := io.ReadAll(br); !bytes.Equal(rest, tail) {
			t.Fatalf("round trip left %q, want %q", rest, tail)
		}
	})
}

// logBuffer collects JSON log records, at debug level, for tests that
// check what was logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// records returns the records with message msg.
func (l *logBuffer) records(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(l.buf.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// prefixConn writes its header before the first Write's bytes, in the
// same write: a balancer's header and the client's ClientHello in one
// segment.
type prefixConn struct {
	net.Conn
	header []byte
}

func (c *prefixConn) Write(p []byte) (int, error) {
	if c.header != nil {
		h := c.header
		c.header = nil
		if _, err := c.Conn.Write(append(h, p...)); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// dialProxied dials the server from the local address from, sends header
// — in the ClientHello's first write, or a byte per write when split — and
// completes a TLS handshake with cfg.
func dialProxied(t testing.TB, addr, from string, header []byte, split bool, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { raw.Close() })
	var nc net.Conn = &prefixConn{Conn: raw, header: header}
	if split {
		for i := range header {
			if _, err := raw.Write(header[i : i+1]); err != nil {
				return nil, err
			}
		}
		nc = raw
	}
	c := tls.Client(nc, cfg)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// TestProxyProtocol: connections from a trusted balancer (127.0.0.1) with
// a version 1 or 2 header — in one segment with the ClientHello, or a
// byte per segment — complete TLS 1.2 and 1.3 handshakes, and the
// client's address from the header is what logs (remote_addr, with
// proxy_addr the balancer's) and the per-source limits see; a LOCAL
// command keeps the socket's address.
func TestProxyProtocol(t *testing.T) {
	for _, engine := range testEngines() {
		for _, m := range []mode{modeTLS12, modeTLS13} {
			t.Run(engine+"/"+m.name, func(t *testing.T) {
				logs := &logBuffer{}
				e := start(t, engine, m, Options{
					ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
					SourceMaxConns:    100,
					Logger:            slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				})
				for _, tt := range []struct {
					name       string
					header     []byte
					split      bool
					wantRemote string // "" for the socket's
					wantSource string
				}{
					{"v1", headerV1(t, testClient4, testServer4), false, "192.0.2.7:51000", "192.0.2.7"},
					{"v2 TCP6", headerV2(t, testClient6, testServer6), false, "[2001:db8::7]:51001", "2001:db8::"},
					{"v1 byte by byte", headerV1(t, testClient4, testServer4), true, "192.0.2.7:51000", "192.0.2.7"},
					{"v2 byte by byte", headerV2(t, testClient6, testServer6), true, "[2001:db8::7]:51001", "2001:db8::"},
					{"v2 LOCAL", headerLocal(t), false, "", "127.0.0.1"},
				} {
					t.Run(tt.name, func(t *testing.T) {
						before := len(logs.records("handshake done"))
						c, err := dialProxied(t, e.addr, "127.0.0.1", tt.header, tt.split, e.clientTLS)
						if err != nil {
							t.Fatalf("handshake after the header: %v", err)
						}
						// Closed, and counted closed by the server, before
						// the next case counts its source's connections.
						defer e.rec.waitFor(t, "the connection closed", 10*time.Second, func() bool { return e.rec.active == 0 })
						defer c.Close()
						if f := roundTrip(t, c, proto.Echo, []byte("through the balancer")); string(f.Body) != "through the balancer" {
							t.Fatalf("ECHO: got %q", f.Body)
						}
						if v := c.ConnectionState().Version; v != m.version {
							t.Errorf("TLS version %s, want %s", tls.VersionName(v), tls.VersionName(m.version))
						}
						recs := logs.records("handshake done")
						if len(recs) != before+1 {
							t.Fatalf("got %d new \"handshake done\" records, want 1", len(recs)-before)
						}
						r := recs[len(recs)-1]
						want := tt.wantRemote
						if want == "" {
							want = c.LocalAddr().String()
						}
						if r["remote_addr"] != want {
							t.Errorf("remote_addr %v, want %s", r["remote_addr"], want)
						}
						proxyAddr, hasProxy := r["proxy_addr"]
						switch {
						case tt.wantRemote != "" && proxyAddr != c.LocalAddr().String():
							t.Errorf("proxy_addr %v, want the balancer's %s", proxyAddr, c.LocalAddr())
						case tt.wantRemote == "" && hasProxy:
							t.Errorf("proxy_addr %v for a LOCAL header, want none", proxyAddr)
						}
						if conns := e.srv.limits.Conns(netip.MustParseAddr(tt.wantSource)); conns != 1 {
							t.Errorf("source %s holds %d connections, want 1", tt.wantSource, conns)
						}
					})
				}
				e.rec.mu.Lock()
				refused := len(e.rec.refused)
				e.rec.mu.Unlock()
				if refused != 0 {
					t.Errorf("refused: %v, want none", e.rec.refused)
				}
			})
		}
	}
}

// TestProxyProtocolLimitsRealAddress: behind a trusted balancer the
// per-source limits count the clients the headers name, not the
// balancer: a second connection for one client is refused at a limit of
// one, another client's is admitted.
func TestProxyProtocolLimitsRealAddress(t *testing.T) {
	for _, engine := range testEngines() {
		t.Run(engine, func(t *testing.T) {
			e := start(t, engine, modeTLS13, Options{
				ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
				SourceMaxConns:    1,
			})
			first, err := dialProxied(t, e.addr, "127.0.0.1", headerV2(t, testClient4, testServer4), false, e.clientTLS)
			if err != nil {
				t.Fatal(err)
			}
			defer first.Close()
			if _, err := dialProxied(t, e.addr, "127.0.0.1", headerV2(t, testClient4, testServer4), false, e.clientTLS); err == nil {
				t.Fatal("a second connection for 192.0.2.7: handshake done, want it refused")
			}
			e.rec.waitFor(t, "the refusal", 10*time.Second, func() bool { return e.rec.refused[RefusedSourceConns] == 1 })
			other := &net.TCPAddr{IP: net.ParseIP("192.0.2.8"), Port: 1}
			c, err := dialProxied(t, e.addr, "127.0.0.1", headerV1(t, other, testServer4), false, e.clientTLS)
			if err != nil {
				t.Fatalf("a connection for 192.0.2.8: %v", err)
			}
			c.Close()
			e.rec.mu.Lock()
			defer e.rec.mu.Unlock()
			if e.rec.accepted != 2 {
				t.Errorf("accepted %d, want 2 (the refused one is not)", e.rec.accepted)
			}
		})
	}
}

// TestProxyProtocolBadHeaders: from a trusted balancer, a connection
// without a header, with garbage, a truncated header or one that stalls
// past the handshake timeout is closed before any handshake and counted
// as refused (proxy_header), never as accepted; the refusals are logged
// at most once a second; the server goes on serving.
func TestProxyProtocolBadHeaders(t *testing.T) {
	const hsTimeout = 300 * time.Millisecond
	for _, engine := range testEngines() {
		t.Run(engine, func(t *testing.T) {
			logs := &logBuffer{}
			e := start(t, engine, modeTLS13, Options{
				ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
				HandshakeTimeout:  hsTimeout,
				Logger:            slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			})
			v2 := headerV2(t, testClient4, testServer4)
			cases := []struct {
				name  string
				send  []byte
				close bool // close after sending; else wait for the server
			}{
				{"a ClientHello without a header", helloFor(t, tls.VersionTLS13), false},
				{"garbage", []byte("GET / HTTP/1.0\r\n\r\n"), false},
				{"a v1 header without its end", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 51000 4242"), false}, // stalls: the timeout
				{"a v2 header cut short", v2[:len(v2)-3], true},
				{"nothing at all", nil, true},
			}
			for i, tt := range cases {
				t.Run(tt.name, func(t *testing.T) {
					c := e.dialRaw()
					if len(tt.send) > 0 {
						if _, err := c.Write(tt.send); err != nil {
							t.Fatal(err)
						}
					}
					if tt.close {
						c.Close()
					} else {
						expectClosed(t, c)
					}
					e.rec.waitFor(t, "the refusal", 10*time.Second, func() bool { return e.rec.refused[RefusedProxyHeader] == i+1 })
				})
			}
			e.rec.mu.Lock()
			accepted, handshakes := e.rec.accepted, e.rec.handshakes
			e.rec.mu.Unlock()
			if accepted != 0 || handshakes != 0 {
				t.Errorf("accepted %d and began %d handshakes, want none", accepted, handshakes)
			}
			warned := logs.records("refusing a connection from a trusted balancer: bad PROXY protocol header")
			if len(warned) < 1 || len(warned) > 2 {
				t.Errorf("%d warnings for 4 bad headers within about a second, want 1 or 2 (at most once a second)", len(warned))
			}
			if len(warned) > 0 && !strings.Contains(warned[0]["err"].(string), "send-proxy-v2") {
				t.Errorf("the warning for a ClientHello without a header says %q, want a hint at send-proxy-v2", warned[0]["err"])
			}
			c, err := dialProxied(t, e.addr, "127.0.0.1", v2, false, e.clientTLS)
			if err != nil {
				t.Fatalf("a good header after the bad ones: %v", err)
			}
			c.Close()
		})
	}
}

// TestProxyProtocolUntrusted: a PROXY header from an address that is not
// a trusted balancer is never honoured — it fails the TLS handshake — and
// connections from there without one are served as usual; the trusted
// balancer (127.0.0.2) is honoured meanwhile.
func TestProxyProtocolUntrusted(t *testing.T) {
	needLocal(t, "127.0.0.2")
	for _, engine := range testEngines() {
		t.Run(engine, func(t *testing.T) {
			e := start(t, engine, modeTLS13, Options{ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
			if c, err := dialProxied(t, e.addr, "127.0.0.1", headerV1(t, testClient4, testServer4), false, e.clientTLS); err == nil {
				c.Close()
				t.Fatal("a header from an untrusted address: handshake done, want it failed")
			}
			e.rec.waitClosed(t, CloseHandshakeError, 1, 10*time.Second)
			e.assertHealthy() // 127.0.0.1 without a header
			c, err := dialProxied(t, e.addr, "127.0.0.2", headerV1(t, testClient4, testServer4), false, e.clientTLS)
			if err != nil {
				t.Fatalf("from the trusted balancer: %v", err)
			}
			c.Close()
			e.rec.mu.Lock()
			defer e.rec.mu.Unlock()
			if len(e.rec.refused) != 0 {
				t.Errorf("refused: %v, want none", e.rec.refused)
			}
		})
	}
}

func TestProxyProtocolOptions(t *testing.T) {
	s, err := New(Options{ProxyProtocolFrom: []netip.Prefix{
		netip.MustParsePrefix("10.1.2.3/8"),
		netip.MustParsePrefix("::ffff:192.0.2.0/120"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := s.opts.ProxyProtocolFrom
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.0/24")}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("resolved: got %v, want %v", got, want)
	}
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"10.9.9.9:1", true},
		{"[::ffff:10.9.9.9]:1", true},
		{"192.0.2.200:1", true},
		{"11.0.0.1:1", false},
		{"[2001:db8::1]:1", false},
	} {
		if got := s.trustedProxy(net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tt.addr))); got != tt.want {
			t.Errorf("trustedProxy(%s): got %v, want %v", tt.addr, got, tt.want)
		}
	}
	if _, err := New(Options{ProxyProtocolFrom: []netip.Prefix{{}}}); err == nil {
		t.Error("an invalid prefix: got no error")
	}
}
