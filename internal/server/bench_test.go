package server

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// BenchmarkAnswer measures the per-message server path without sockets:
// decoding a batch of requests and building the replies. ns/op is per
// message.
func BenchmarkAnswer(b *testing.B) {
	for _, tt := range []struct {
		name   string
		typ    proto.Type
		size   int
		batch  int
		events Events
	}{
		{"ECHO-64B-single", proto.Echo, 64, 1, nil},
		{"ECHO-64B-single-events", proto.Echo, 64, 1, NopEvents{}},
		{"ECHO-64B-pipelined64", proto.Echo, 64, 64, nil},
		{"ECHO-64B-pipelined64-events", proto.Echo, 64, 64, NopEvents{}},
		{"REVERSE-64B-pipelined64", proto.Reverse, 64, 64, nil},
		{"ECHO-4KiB-single", proto.Echo, 4096, 1, nil},
	} {
		b.Run(tt.name, func(b *testing.B) {
			s, err := New(Options{Events: tt.events})
			if err != nil {
				b.Fatal(err)
			}
			var in []byte
			for range tt.batch {
				in = proto.AppendFrame(in, tt.typ, bytes.Repeat([]byte("x"), tt.size))
			}
			out := make([]byte, 0, s.flushAt+proto.HeaderSize+proto.DefaultMaxBody)
			b.SetBytes(int64(proto.HeaderSize + tt.size))
			b.ReportAllocs()
			msgs := 0
			for b.Loop() {
				if msgs%tt.batch == 0 {
					var used int
					out, used, err = s.answer(out[:0], in, &s.env)
					if err != nil || used != len(in) {
						b.Fatalf("answer: used %d of %d, %v", used, len(in), err)
					}
				}
				msgs++
			}
		})
	}
}

// BenchmarkEchoLoopback measures ECHOs of 64 bytes end to end over one
// loopback connection: ping-pong, and pipelined in batches of 64 whose
// replies the server sends in one record. ns/op is per message; the client
// shares the CPU.
func BenchmarkEchoLoopback(b *testing.B) {
	for _, m := range []mode{modeTLS13, modePlaintext} {
		for _, depth := range []int{1, 64} {
			name := m.name + "/ping-pong"
			if depth > 1 {
				name = m.name + "/pipelined64"
			}
			b.Run(name, func(b *testing.B) {
				e := start(b, Engines()[0], m, Options{})
				c := e.dial()
				var batch []byte
				for range depth {
					batch = proto.AppendFrame(batch, proto.Echo, bytes.Repeat([]byte("p"), 64))
				}
				replies := make([]byte, len(batch))
				b.SetBytes(int64(len(batch) / depth))
				b.ReportAllocs()
				_ = c.SetDeadline(time.Now().Add(10 * time.Minute))
				for i := 0; i < b.N; i += depth {
					if _, err := c.Write(batch); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, replies); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if !bytes.Equal(replies, batch) {
					b.Fatal("replies differ from the requests")
				}
			})
		}
	}
}
