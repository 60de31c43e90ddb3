package proto

import (
	"bytes"
	"strconv"
	"testing"
	"time"
)

// loopReader serves the same stream forever.
type loopReader struct {
	data []byte
	off  int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

func BenchmarkParse(b *testing.B) {
	var stream []byte
	for range 64 {
		stream = AppendFrame(stream, Echo, bytes.Repeat([]byte("x"), 64))
	}
	b.SetBytes(int64(len(stream)) / 64)
	b.ReportAllocs()
	rest := stream
	for b.Loop() {
		_, n, err := Parse(rest, DefaultMaxBody)
		if err != nil || n == 0 {
			b.Fatal("parse failed")
		}
		if rest = rest[n:]; len(rest) == 0 {
			rest = stream
		}
	}
}

func BenchmarkDecoder(b *testing.B) {
	for _, size := range []int{64, 4096} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			var stream []byte
			for range 16 {
				stream = AppendFrame(stream, Echo, bytes.Repeat([]byte("x"), size))
			}
			d := NewDecoder(&loopReader{data: stream}, DefaultMaxBody)
			b.SetBytes(int64(HeaderSize + size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Next(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 64)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendFrame(buf[:0], Echo, body)
	}
}

func BenchmarkAppendReply(b *testing.B) {
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	keys := []byte("current sha256//x\n")
	env := Env{Now: func() time.Time { return fixed }, Keys: func() []byte { return keys }}
	tests := []struct {
		name string
		req  Frame
	}{
		{"ECHO-64", Frame{Echo, bytes.Repeat([]byte("x"), 64)}},
		{"REVERSE-64-ascii", Frame{Reverse, bytes.Repeat([]byte("x"), 64)}},
		{"REVERSE-64-utf8", Frame{Reverse, bytes.Repeat([]byte("é"), 32)}},
		{"TIME", Frame{Time, []byte("\x00")}},
		{"KEYS", Frame{Keys, nil}},
		{"unknown", Frame{9, nil}},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			buf := make([]byte, 0, 8192)
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendReply(buf[:0], tt.req, env)
			}
		})
	}
}
