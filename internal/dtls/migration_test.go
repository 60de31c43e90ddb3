package dtls

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// rebindConn is a client's UDP socket that can move to a new local port,
// as a NAT rebinding moves a player: Rebind opens a new socket and closes
// the old one; reads and writes carry on on the new one.
type rebindConn struct {
	mu     sync.Mutex
	cur    *net.UDPConn
	rdl    time.Time
	closed bool
}

func (r *rebindConn) conn() *net.UDPConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

func (r *rebindConn) Rebind(t testing.TB) (old, now net.Addr) {
	t.Helper()
	nc := listenLoopback(t)
	r.mu.Lock()
	oc := r.cur
	r.cur = nc
	_ = nc.SetReadDeadline(r.rdl)
	r.mu.Unlock()
	oc.Close()
	return oc.LocalAddr(), nc.LocalAddr()
}

func (r *rebindConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c := r.conn()
		n, a, err := c.ReadFrom(b)
		if err != nil && errors.Is(err, net.ErrClosed) {
			r.mu.Lock()
			rebound := r.cur != c && !r.closed
			r.mu.Unlock()
			if rebound {
				continue
			}
		}
		return n, a, err
	}
}

func (r *rebindConn) WriteTo(b []byte, a net.Addr) (int, error) { return r.conn().WriteTo(b, a) }
func (r *rebindConn) LocalAddr() net.Addr                       { return r.conn().LocalAddr() }
func (r *rebindConn) SetDeadline(t time.Time) error {
	_ = r.SetReadDeadline(t)
	return r.SetWriteDeadline(t)
}
func (r *rebindConn) SetReadDeadline(t time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rdl = t
	return r.cur.SetReadDeadline(t)
}
func (r *rebindConn) SetWriteDeadline(t time.Time) error { return r.conn().SetWriteDeadline(t) }
func (r *rebindConn) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return r.conn().Close()
}

// A client whose address changes mid-session (a NAT rebinding) keeps its
// session through its connection ID: the server checks that the new
// address reaches it (RFC 9853) and answers there, with no new handshake.
// The client asks again until an answer comes, as ours does on loss.
func TestConnectionIDMigration(t *testing.T) {
	e := start(t, Options{})
	rc := &rebindConn{cur: listenLoopback(t)}
	c, err := e.dialOn(rc)
	if err != nil {
		t.Fatal(err)
	}
	if f := roundTrip(t, c, proto.Echo, []byte("before")); string(f.Body) != "before" {
		t.Fatalf("got %q", f.Body)
	}
	old, now := rc.Rebind(t)
	t.Logf("client moved from %v to %v", old, now)
	buf := make([]byte, 2048)
	var got string
	for try := 0; try < 20 && got != "after"; try++ {
		if _, err := c.Write(proto.AppendFrame(nil, proto.Echo, []byte("after"))); err != nil {
			t.Fatalf("writing after the move: %v", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			fs := frames(t, buf[:n])
			got = string(fs[0].Body)
		}
	}
	if got != "after" {
		t.Fatalf("no answer at the new address after 20 tries")
	}
	waitUntil(t, 5*time.Second, func() string {
		e.g.mu.Lock()
		defer e.g.mu.Unlock()
		for _, ss := range e.g.peers {
			if ss.addr.String() != now.String() {
				return "the server still routes the session by " + ss.addr.String()
			}
		}
		return ""
	})
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	if e.rec.accepted != 1 || e.rec.handshakes[ResultOK] != 1 {
		t.Errorf("events %v: want one session, one handshake", e.rec)
	}
}
