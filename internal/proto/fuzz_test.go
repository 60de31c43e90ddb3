package proto

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"slices"
	"testing"
	"testing/iotest"
)

// FuzzParse feeds arbitrary bytes to Parse and the Decoder. Properties: no
// input panics; a frame that parses re-encodes to exactly the bytes it came
// from; the Decoder, fed one byte at a time, yields the same frames as
// repeated Parse calls and stops with the same kind of error; a header over
// the maximum is rejected before the Decoder grows its buffer for it; Need
// says 0 exactly where Parse finds a whole frame, and otherwise how many
// bytes make it whole.
func FuzzParse(f *testing.F) {
	f.Add([]byte{}, uint16(4096))
	f.Add(frame(Echo, "hello"), uint16(4096))
	f.Add(append(frame(Reverse, "añb"), frame(Time, "\x00")...), uint16(16))
	f.Add(header(Echo, 0xFFFFFFFF), uint16(4096))
	f.Add(append(frame(Echo, "ok"), header(Echo, 5000)...), uint16(4096))
	f.Add([]byte{1, 0, 0}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, maxBody16 uint16) {
		maxBody := int(maxBody16)
		if maxBody == 0 {
			maxBody = DefaultMaxBody // as NewDecoder reads a zero maximum
		}
		var want []Frame
		var wantErr error
		rest := data
		for {
			fr, n, err := Parse(rest, maxBody)
			if err != nil {
				wantErr = err
				if n != 0 {
					t.Fatalf("Parse returned n=%d with error %v", n, err)
				}
				break
			}
			if need := Need(rest); (n == 0) != (need > 0) {
				t.Fatalf("Need(% x) = %d, but Parse took %d bytes", rest, need, n)
			} else if n == 0 && len(rest) < HeaderSize && len(rest)+need != HeaderSize {
				t.Fatalf("Need(% x) = %d, want the rest of the header", rest, need)
			} else if n == 0 && len(rest) >= HeaderSize {
				if _, m, _ := Parse(append(slices.Clone(rest), make([]byte, need)...), maxBody); m != len(rest)+need {
					t.Fatalf("Need(% x) = %d, but that many more bytes make a frame of %d", rest, need, m)
				}
			}
			if n == 0 {
				if len(rest) > 0 {
					wantErr = io.ErrUnexpectedEOF
				} else {
					wantErr = io.EOF
				}
				break
			}
			if n < HeaderSize || n > len(rest) || len(fr.Body) > maxBody {
				t.Fatalf("Parse: n=%d of %d bytes, body %d of max %d", n, len(rest), len(fr.Body), maxBody)
			}
			if re := AppendFrame(nil, fr.Type, fr.Body); !bytes.Equal(re, rest[:n]) {
				t.Fatalf("re-encoding: got % x, want % x", re, rest[:n])
			}
			want = append(want, Frame{Type: fr.Type, Body: bytes.Clone(fr.Body)})
			rest = rest[n:]
		}

		d := NewDecoder(iotest.OneByteReader(bytes.NewReader(data)), maxBody)
		got, err := readAll(d)
		if len(got) != len(want) {
			t.Fatalf("Decoder: got %d frames, Parse %d", len(got), len(want))
		}
		for i := range want {
			if got[i].Type != want[i].Type || !bytes.Equal(got[i].Body, want[i].Body) {
				t.Fatalf("frame %d: Decoder and Parse disagree", i)
			}
		}
		switch {
		case wantErr == io.EOF:
			if err != io.EOF {
				t.Fatalf("Decoder: got %v, want io.EOF", err)
			}
		case wantErr == io.ErrUnexpectedEOF:
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("Decoder: got %v, want a truncated-frame error", err)
			}
		default:
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Kind != KindTooLarge {
				t.Fatalf("Decoder: got %v, want %v", err, wantErr)
			}
		}
		if limit := max(minDecoderBuffer, HeaderSize+maxBody); len(d.buf) > limit {
			t.Fatalf("Decoder buffer grew to %d bytes, over %d", len(d.buf), limit)
		}
	})
}

// FuzzRoundTrip encodes frames made from the fuzzer's input and decodes them
// again: encode-then-decode must be the identity.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("hello"), uint8(3), uint32(0))
	f.Add([]byte{}, uint8(1), uint32(7))
	f.Add(bytes.Repeat([]byte("añ€"), 500), uint8(9), uint32(0xFFFFFFFF))
	f.Fuzz(func(t *testing.T, body []byte, count uint8, typ uint32) {
		if len(body) > DefaultMaxBody {
			body = body[:DefaultMaxBody]
		}
		var stream []byte
		var want []Frame
		for i := range int(count) {
			fr := Frame{Type: Type(typ + uint32(i)), Body: body[:len(body)*i/max(int(count), 1)]}
			stream = AppendFrame(stream, fr.Type, fr.Body)
			want = append(want, fr)
		}
		got, err := readAll(NewDecoder(iotest.HalfReader(bytes.NewReader(stream)), DefaultMaxBody))
		if err != io.EOF {
			t.Fatalf("got error %v, want io.EOF", err)
		}
		if len(got) != len(want) {
			t.Fatalf("got %d frames, want %d", len(got), len(want))
		}
		for i := range want {
			if got[i].Type != want[i].Type || !bytes.Equal(got[i].Body, want[i].Body) {
				t.Fatalf("frame %d: got (%v, % x), want (%v, % x)", i, got[i].Type, got[i].Body, want[i].Type, want[i].Body)
			}
		}
	})
}

// FuzzParseKeys: no input panics, and whatever parses renders back to a body
// that parses to the same pins, whatever "revoked", "client" and unknown
// lines are mixed in. Pins built from the input round-trip too.
func FuzzParseKeys(f *testing.F) {
	a, b, c := testPin("a"), testPin("b"), testPin("c")
	f.Add([]byte("current "+a+"\n"), []byte("x"))
	f.Add([]byte("current "+a+"\nnext "+b+"\n"), []byte(""))
	f.Add([]byte("current "+a+"\nfuture stuff\nnext "+b), []byte("yz"))
	f.Add([]byte("next "+a+"\n"), []byte("\x00"))
	f.Add([]byte("current sha256//AAAA\n"), []byte("q"))
	f.Add([]byte("current "+a+"\nrevoked "+b+"\nnext "+c+"\n"), []byte("rev"))
	f.Add([]byte("current "+a+"\nclient "+b+"\nrevoked "+c+"\nclient revoked "+a+"\n"), []byte("cl"))
	f.Add([]byte("current "+a+"\nrevoked sha256//AAAA\n"), []byte("r"))
	f.Add([]byte("revoked "+a+"\ncurrent "+b+"\n"), []byte("rc"))
	f.Fuzz(func(t *testing.T, body, seeds []byte) {
		ks, err := ParseKeySet(body)
		if err == nil {
			ks2, err2 := ParseKeySet(AppendKeySet(nil, ks))
			if err2 != nil || ks2.Current != ks.Current || !slices.Equal(ks2.Next, ks.Next) || !slices.Equal(ks2.Revoked, ks.Revoked) {
				t.Fatalf("re-parse of rendered keys: got (%+v, %v), want %+v", ks2, err2, ks)
			}
			cur, next, err3 := ParseKeys(body)
			if err3 != nil || cur != ks.Current || !slices.Equal(next, ks.Next) {
				t.Fatalf("ParseKeys and ParseKeySet disagree: got (%q, %q, %v), want %+v", cur, next, err3, ks)
			}
		}
		var pins []string
		for i := range seeds {
			sum := sha256.Sum256(seeds[:i+1])
			pins = append(pins, "sha256//"+base64.StdEncoding.EncodeToString(sum[:]))
		}
		if len(pins) == 0 {
			return
		}
		half := 1 + (len(pins)-1)/2
		want := KeySet{Current: pins[0], Next: pins[1:half], Revoked: pins[half:]}
		got, err := ParseKeySet(AppendKeySet(nil, want))
		if err != nil || got.Current != want.Current || !slices.Equal(got.Next, want.Next) && len(want.Next) > 0 || !slices.Equal(got.Revoked, want.Revoked) && len(want.Revoked) > 0 {
			t.Fatalf("round trip of %d pins: got (%+v, %v), want %+v", len(pins), got, err, want)
		}
	})
}
