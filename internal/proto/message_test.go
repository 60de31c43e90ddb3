package proto

import (
	"bytes"
	"testing"
	"time"
)

func TestAppendReply(t *testing.T) {
	fixed := time.Date(2026, 3, 4, 5, 6, 7, 890, time.FixedZone("X", 3600))
	env := Env{
		Now:  func() time.Time { return fixed },
		Keys: func() []byte { return []byte("current sha256//x\n") },
	}
	tests := []struct {
		name     string
		req      Frame
		env      Env
		wantType Type
		want     string
	}{
		{"echo", Frame{Echo, []byte("hello")}, env, Echo, "hello"},
		{"echo empty", Frame{Echo, nil}, env, Echo, ""},
		{"echo keeps the NUL", Frame{Echo, []byte("hi\x00")}, env, Echo, "hi\x00"},
		{"reverse ascii", Frame{Reverse, []byte("hello")}, env, Reverse, "olleh"},
		{"reverse runes", Frame{Reverse, []byte("añb€😀")}, env, Reverse, "😀€bña"},
		{"reverse invalid utf-8 by bytes", Frame{Reverse, []byte("a\xffb\xc3")}, env, Reverse, "\xc3b\xffa"},
		{"reverse keeps one NUL at the end", Frame{Reverse, []byte("abc\x00")}, env, Reverse, "cba\x00"},
		{"reverse NUL alone", Frame{Reverse, []byte("\x00")}, env, Reverse, "\x00"},
		{"reverse runes before a NUL", Frame{Reverse, []byte("é€\x00")}, env, Reverse, "€é\x00"},
		{"reverse two NULs are bytes", Frame{Reverse, []byte("ab\x00\x00")}, env, Reverse, "\x00\x00ba"},
		{"reverse inner NUL", Frame{Reverse, []byte("a\x00b")}, env, Reverse, "b\x00a"},
		{"time in UTC", Frame{Time, nil}, env, Time, "2026-03-04T04:06:07Z"},
		{"time ignores a body", Frame{Time, []byte("what time")}, env, Time, "2026-03-04T04:06:07Z"},
		{"time with a NUL-terminated request", Frame{Time, []byte("\x00")}, env, Time, "2026-03-04T04:06:07Z\x00"},
		{"time with a NUL-terminated string", Frame{Time, []byte("time\x00")}, env, Time, "2026-03-04T04:06:07Z\x00"},
		{"keys", Frame{Keys, nil}, env, Keys, "current sha256//x\n"},
		{"keys unsupported", Frame{Keys, nil}, Env{}, Error, "KEYS not supported"},
		{"keys empty", Frame{Keys, nil}, Env{Keys: func() []byte { return nil }}, Error, "KEYS: no key pins available"},
		{"unknown type", Frame{7, []byte("x")}, env, Error, "unknown message type 7"},
		{"error is not a request", Frame{Error, nil}, env, Error, "unknown message type 4294967295"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("prefix")
			out := AppendReply(bytes.Clone(prefix), tt.req, tt.env)
			if !bytes.HasPrefix(out, prefix) {
				t.Fatalf("got %q, want the reply appended after %q", out, prefix)
			}
			f, n, err := Parse(out[len(prefix):], 1<<20)
			if err != nil || n != len(out)-len(prefix) {
				t.Fatalf("reply does not parse as exactly one frame: n=%d of %d, err=%v", n, len(out)-len(prefix), err)
			}
			if f.Type != tt.wantType || string(f.Body) != tt.want {
				t.Errorf("got (%v, %q), want (%v, %q)", f.Type, f.Body, tt.wantType, tt.want)
			}
		})
	}
}

func TestAppendReplyRealClock(t *testing.T) {
	before := time.Now().UTC().Truncate(time.Second)
	out := AppendReply(nil, Frame{Type: Time}, Env{})
	after := time.Now().UTC()
	got, err := time.Parse(TimeLayout, string(out[HeaderSize:]))
	if err != nil {
		t.Fatalf("TIME reply %q does not parse as %s: %v", out[HeaderSize:], TimeLayout, err)
	}
	if got.Before(before) || got.After(after) {
		t.Errorf("got %v, want between %v and %v", got, before, after)
	}
}

func TestReverseTwiceIsIdentity(t *testing.T) {
	for _, s := range []string{"", "a", "hello world", "añb€😀", "\xff\xfe", "mixed \xff é"} {
		once := AppendReply(nil, Frame{Reverse, []byte(s)}, Env{})
		twice := AppendReply(nil, Frame{Reverse, once[HeaderSize:]}, Env{})
		if string(twice[HeaderSize:]) != s {
			t.Errorf("reverse(reverse(%q)): got %q", s, twice[HeaderSize:])
		}
	}
}
