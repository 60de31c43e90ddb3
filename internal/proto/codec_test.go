package proto

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
)

func frame(t Type, body string) []byte { return AppendFrame(nil, t, []byte(body)) }

func header(t Type, length uint32) []byte {
	return []byte{byte(t), byte(t >> 8), byte(t >> 16), byte(t >> 24),
		byte(length), byte(length >> 8), byte(length >> 16), byte(length >> 24)}
}

func TestAppendFrameLayout(t *testing.T) {
	got := AppendFrame([]byte("x"), Reverse, []byte("abc"))
	want := []byte{'x', 1, 0, 0, 0, 3, 0, 0, 0, 'a', 'b', 'c'}
	if !bytes.Equal(got, want) {
		t.Errorf("got % x, want % x", got, want)
	}
	got = AppendError(nil, "no")
	want = []byte{0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 'n', 'o'}
	if !bytes.Equal(got, want) {
		t.Errorf("AppendError: got % x, want % x", got, want)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		max      int
		wantType Type
		wantBody string
		wantN    int
		wantKind string
	}{
		{name: "empty input", in: nil, max: 10},
		{name: "partial header", in: []byte{0, 0, 0}, max: 10},
		{name: "header only, body pending", in: header(Echo, 3), max: 10},
		{name: "partial body", in: append(header(Echo, 3), 'a'), max: 10},
		{name: "empty body", in: header(Time, 0), max: 10, wantType: Time, wantN: 8},
		{name: "whole frame", in: frame(Echo, "hi"), max: 10, wantType: Echo, wantBody: "hi", wantN: 10},
		{name: "frame then more", in: append(frame(Reverse, "ab"), 9, 9, 9), max: 10, wantType: Reverse, wantBody: "ab", wantN: 10},
		{name: "body at the maximum", in: frame(Echo, "12345"), max: 5, wantType: Echo, wantBody: "12345", wantN: 13},
		{name: "body over the maximum", in: frame(Echo, "123456"), max: 5, wantType: Echo, wantKind: KindTooLarge},
		{name: "over the maximum from the header alone", in: header(Echo, 0xFFFFFFFF), max: 4096, wantType: Echo, wantKind: KindTooLarge},
		{name: "unknown type still parses", in: frame(7, "x"), max: 10, wantType: 7, wantBody: "x", wantN: 9},
		{name: "negative maximum allows only empty bodies", in: frame(Echo, "x"), max: -1, wantType: Echo, wantKind: KindTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, n, err := Parse(tt.in, tt.max)
			if tt.wantKind != "" {
				var pe *ProtocolError
				if !errors.As(err, &pe) || pe.Kind != tt.wantKind {
					t.Fatalf("got error %v, want a ProtocolError of kind %s", err, tt.wantKind)
				}
				if n != 0 || f.Type != tt.wantType {
					t.Errorf("got n=%d type=%v, want n=0 type=%v", n, f.Type, tt.wantType)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if n != tt.wantN || f.Type != tt.wantType || string(f.Body) != tt.wantBody {
				t.Errorf("got (%v, %q, %d), want (%v, %q, %d)", f.Type, f.Body, n, tt.wantType, tt.wantBody, tt.wantN)
			}
			if n > 0 && cap(f.Body) != len(f.Body) {
				t.Errorf("got body cap %d, want it clipped to its length %d so appends cannot clobber the next frame", cap(f.Body), len(f.Body))
			}
		})
	}
}

func TestNeed(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want int
	}{
		{"nothing", nil, HeaderSize},
		{"part of a header", []byte{0, 0, 0}, HeaderSize - 3},
		{"a header, its body pending", header(Echo, 5), 5},
		{"part of a body", append(header(Echo, 5), 'a', 'b'), 3},
		{"a whole frame", frame(Echo, "abcde"), 0},
		{"an empty frame", header(Time, 0), 0},
		{"a frame and the next begun", append(frame(Echo, "ab"), 1), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Need(tt.in); got != tt.want {
				t.Errorf("Need(% x): got %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestTruncatedAndKindOf(t *testing.T) {
	err := Truncated(5)
	if got := KindOf(fmt.Errorf("reading: %w", err)); got != KindTruncated {
		t.Errorf("KindOf a wrapped Truncated: got %q, want %q", got, KindTruncated)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Truncated(5) = %v: want it to wrap io.ErrUnexpectedEOF", err)
	}
	if want := "stream ended 5 bytes into a frame: unexpected EOF"; err.Error() != want {
		t.Errorf("Truncated(5): got %q, want %q", err, want)
	}
	if _, _, err := Parse(header(Echo, 99), 10); KindOf(err) != KindTooLarge {
		t.Errorf("KindOf Parse's error: got %q, want %q", KindOf(err), KindTooLarge)
	}
	if got := KindOf(io.EOF); got != "" {
		t.Errorf("KindOf(io.EOF): got %q, want \"\"", got)
	}
}

// readAll decodes every frame from d, copying bodies, until an error.
func readAll(d *Decoder) ([]Frame, error) {
	var out []Frame
	for {
		f, err := d.Next()
		if err != nil {
			return out, err
		}
		out = append(out, Frame{Type: f.Type, Body: bytes.Clone(f.Body)})
	}
}

func TestDecoder(t *testing.T) {
	var stream []byte
	var want []Frame
	for i := range 50 {
		body := bytes.Repeat([]byte{byte(i)}, i*97)
		stream = AppendFrame(stream, Type(i%4), body)
		want = append(want, Frame{Type: Type(i % 4), Body: body})
	}
	readers := []struct {
		name string
		r    func() io.Reader
	}{
		{"one read", func() io.Reader { return bytes.NewReader(stream) }},
		{"one byte at a time", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) }},
		{"half reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) }},
		{"data with EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) }},
	}
	for _, rr := range readers {
		t.Run(rr.name, func(t *testing.T) {
			got, err := readAll(NewDecoder(rr.r(), 5000))
			if err != io.EOF {
				t.Fatalf("got error %v, want io.EOF", err)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d frames, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i].Type != want[i].Type || !bytes.Equal(got[i].Body, want[i].Body) {
					t.Fatalf("frame %d: got (%v, %d bytes), want (%v, %d bytes)", i, got[i].Type, len(got[i].Body), want[i].Type, len(want[i].Body))
				}
			}
		})
	}
}

func TestDecoderTruncated(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"inside the header", []byte{0, 0, 0}},
		{"inside the body", frame(Echo, "hello")[:11]},
		{"after a whole frame", append(frame(Echo, "ok"), 1, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readAll(NewDecoder(bytes.NewReader(tt.in), 0))
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Kind != KindTruncated {
				t.Fatalf("got %v, want a ProtocolError of kind %s", err, KindTruncated)
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("got %v, want it to wrap io.ErrUnexpectedEOF", err)
			}
		})
	}
}

// headerThenFail yields a header and then fails the test if read again.
type headerThenFail struct {
	t    *testing.T
	data []byte
}

func (r *headerThenFail) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		r.t.Error("decoder read past a header over the maximum")
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestDecoderTooLargeFromHeaderAlone(t *testing.T) {
	d := NewDecoder(&headerThenFail{t: t, data: header(Echo, 0xFFFFFFFF)}, 4096)
	_, err := d.Next()
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Kind != KindTooLarge {
		t.Fatalf("got %v, want a ProtocolError of kind %s", err, KindTooLarge)
	}
	if len(d.buf) > minDecoderBuffer {
		t.Errorf("got a %d-byte buffer, want at most %d: nothing may be allocated for the body", len(d.buf), minDecoderBuffer)
	}
	if _, err2 := d.Next(); err2 != err {
		t.Errorf("second Next: got %v, want the same sticky error %v", err2, err)
	}
}

func TestDecoderGrowsOnlyToMaximum(t *testing.T) {
	const maxBody = 100 << 10
	body := bytes.Repeat([]byte("z"), maxBody)
	d := NewDecoder(bytes.NewReader(AppendFrame(nil, Echo, body)), maxBody)
	f, err := d.Next()
	if err != nil || !bytes.Equal(f.Body, body) {
		t.Fatalf("got (%d bytes, %v), want the %d-byte body", len(f.Body), err, maxBody)
	}
	if len(d.buf) != HeaderSize+maxBody {
		t.Errorf("got buffer of %d bytes, want exactly %d", len(d.buf), HeaderSize+maxBody)
	}
}

func TestDecoderReadErrorThenResume(t *testing.T) {
	// A timeout is not fatal: the frames read before it come first, and a
	// later Next reads on.
	errTimeout := errors.New("timeout")
	r := io.MultiReader(
		iotest.DataErrReader(bytes.NewReader(frame(Echo, "a"))),
		iotest.ErrReader(errTimeout),
	)
	d := NewDecoder(&stickyReader{r: r, next: bytes.NewReader(frame(Echo, "b"))}, 0)
	if f, err := d.Next(); err != nil || string(f.Body) != "a" {
		t.Fatalf("got (%q, %v), want (\"a\", nil)", f.Body, err)
	}
	if _, err := d.Next(); err != errTimeout {
		t.Fatalf("got %v, want %v", err, errTimeout)
	}
	if f, err := d.Next(); err != nil || string(f.Body) != "b" {
		t.Fatalf("after the error: got (%q, %v), want (\"b\", nil)", f.Body, err)
	}
}

// stickyReader reads r up to its first error, returns that error once and
// then reads next.
type stickyReader struct {
	r, next io.Reader
	failed  bool
}

func (s *stickyReader) Read(p []byte) (int, error) {
	if s.failed {
		return s.next.Read(p)
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.failed = true
	}
	return n, err
}

func TestTypeString(t *testing.T) {
	tests := []struct {
		t    Type
		want string
	}{
		{Echo, "ECHO"}, {Reverse, "REVERSE"}, {Time, "TIME"}, {Keys, "KEYS"}, {Error, "ERROR"}, {7, "Type(7)"},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("Type(%d).String(): got %q, want %q", uint32(tt.t), got, tt.want)
		}
	}
	for _, r := range []Type{Echo, Reverse, Time, Keys} {
		if !r.IsRequest() {
			t.Errorf("%v.IsRequest(): got false, want true", r)
		}
	}
	for _, r := range []Type{Error, 4, 7} {
		if r.IsRequest() {
			t.Errorf("%v.IsRequest(): got true, want false", r)
		}
	}
}
