package main

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// countingConn counts Write calls.
type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestOneWritePerReply checks what makes this the reference server: three
// pipelined requests that arrive in one read get three writes.
func TestOneWritePerReply(t *testing.T) {
	client, srv := net.Pipe()
	defer client.Close()
	cc := &countingConn{Conn: srv}
	done := make(chan struct{})
	go func() { serve(cc); close(done) }()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))

	var req, want []byte
	for _, body := range []string{"one", "two", "héllo"} {
		req = proto.AppendFrame(req, proto.Echo, []byte(body))
		want = proto.AppendFrame(want, proto.Echo, []byte(body))
	}
	req = proto.AppendFrame(req, proto.Reverse, []byte("abc"))
	want = proto.AppendFrame(want, proto.Reverse, []byte("cba"))
	go client.Write(req)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got replies %q, want %q", got, want)
	}
	if n := cc.writes.Load(); n != 4 {
		t.Errorf("got %d writes for 4 requests, want 4", n)
	}
	// A length over the maximum gets an ERROR reply and the end.
	go client.Write(proto.AppendFrame(nil, proto.Echo, make([]byte, proto.DefaultMaxBody+1)))
	f, err := proto.NewDecoder(client, 0).Next()
	if err != nil || f.Type != proto.Error {
		t.Errorf("got %v, %v; want an ERROR reply", f.Type, err)
	}
	client.Close()
	<-done
}
