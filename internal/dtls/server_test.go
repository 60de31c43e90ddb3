package dtls

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

func TestRequests(t *testing.T) {
	e := start(t, Options{Keys: func() []byte {
		return proto.AppendKeys(nil, "sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", nil)
	}})
	c := e.dial()
	for _, tt := range []struct {
		name     string
		typ      proto.Type
		body     string
		wantType proto.Type
		want     string
	}{
		{"echo", proto.Echo, "hello", proto.Echo, "hello"},
		{"reverse", proto.Reverse, "héllo", proto.Reverse, "olléh"},
		{"reverse NUL", proto.Reverse, "abc\x00", proto.Reverse, "cba\x00"},
		{"keys", proto.Keys, "", proto.Keys, "current sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"},
		{"unknown type", 7, "", proto.Error, "unknown message type 7"},
		{"echo after an error", proto.Echo, "still", proto.Echo, "still"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := roundTrip(t, c, tt.typ, []byte(tt.body))
			if f.Type != tt.wantType || string(f.Body) != tt.want {
				t.Errorf("got (%v, %q), want (%v, %q)", f.Type, f.Body, tt.wantType, tt.want)
			}
		})
	}
	f := roundTrip(t, c, proto.Time, nil)
	if _, err := time.Parse(proto.TimeLayout, string(f.Body)); f.Type != proto.Time || err != nil {
		t.Errorf("TIME: got (%v, %q), want a time: %v", f.Type, f.Body, err)
	}
	e.rec.waitFor(t, "the messages counted", 5*time.Second, func() bool {
		return e.rec.messages[proto.Echo] == 2 && e.rec.protoErrs[proto.KindUnknownType] == 1 && e.rec.handshakes[ResultOK] == 1
	})
}

// A batch of requests in one record is answered in datagrams of at most
// MaxDatagram bytes, split at frame boundaries, in request order.
func TestBatchSplitAtFrameBoundaries(t *testing.T) {
	e := start(t, Options{MaxDatagram: 300})
	c := e.dial()
	var batch []byte
	for i := range 10 {
		batch = proto.AppendFrame(batch, proto.Echo, bytes.Repeat([]byte{byte('a' + i)}, 50))
	}
	// 10 replies of 58 bytes: five fit in 300 bytes, so two datagrams.
	recs := exchange(t, c, batch, 2)
	var got []proto.Frame
	for _, r := range recs {
		if len(r) > 300 {
			t.Errorf("a reply datagram of %d bytes, over MaxDatagram 300", len(r))
		}
		got = append(got, frames(t, r)...)
	}
	for i, f := range got {
		if f.Type != proto.Echo || !bytes.Equal(f.Body, bytes.Repeat([]byte{byte('a' + i)}, 50)) {
			t.Errorf("reply %d: got (%v, %q)", i, f.Type, f.Body)
		}
	}
	if len(got) != 10 {
		t.Errorf("got %d replies, want 10", len(got))
	}

	// A reply larger than MaxDatagram goes alone, whole.
	big := bytes.Repeat([]byte("x"), 1000)
	recs = exchange(t, c, proto.AppendFrame(proto.AppendFrame(nil, proto.Echo, []byte("a")), proto.Echo, big), 2)
	if fs := frames(t, recs[0]); len(fs) != 1 || string(fs[0].Body) != "a" {
		t.Errorf("first datagram: %v, want the short reply alone", fs)
	}
	if fs := frames(t, recs[1]); len(fs) != 1 || !bytes.Equal(fs[0].Body, big) {
		t.Errorf("second datagram: want the 1000-byte reply whole")
	}
}

// A record that breaks framing gets an ERROR after the replies to the
// frames before the break, and the session goes on: UDP has no stream
// whose framing could be lost.
func TestBrokenFrames(t *testing.T) {
	e := start(t, Options{})
	c := e.dial()
	for _, tt := range []struct {
		name   string
		record []byte
		want   string
	}{
		{"truncated", append(proto.AppendFrame(nil, proto.Echo, []byte("ok")), 0, 0, 0, 0, 9, 0, 0, 0, 'a'), "split across records"},
		{"header only half", append(proto.AppendFrame(nil, proto.Echo, []byte("ok")), 0, 0, 0), "split across records"},
		{"too large", append(proto.AppendFrame(nil, proto.Echo, []byte("ok")), 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff), "exceeds the maximum of 4096"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := frames(t, exchange(t, c, tt.record, 1)[0])
			if len(fs) != 2 || fs[0].Type != proto.Echo || string(fs[0].Body) != "ok" || fs[1].Type != proto.Error || !strings.Contains(string(fs[1].Body), tt.want) {
				t.Fatalf("got %v, want the ECHO reply then an ERROR saying %q", fs, tt.want)
			}
			if f := roundTrip(t, c, proto.Echo, []byte("next")); string(f.Body) != "next" {
				t.Fatalf("the session did not go on: %v", f)
			}
		})
	}
	e.rec.waitFor(t, "the protocol errors counted", 5*time.Second, func() bool {
		return e.rec.protoErrs[proto.KindTruncated] == 2 && e.rec.protoErrs[proto.KindTooLarge] == 1
	})
}

// A record larger than the largest the server answers (one frame of
// MaxMessage, or a batch of MaxDatagram) gets an ERROR; the session goes
// on. The gate keeps the datagram from pion, whose buffers are only that
// large, and answers it.
func TestOversizeRecord(t *testing.T) {
	e := start(t, Options{})
	c := e.dial()
	rec := proto.AppendFrame(nil, proto.Echo, bytes.Repeat([]byte("y"), 3000))
	rec = proto.AppendFrame(rec, proto.Echo, bytes.Repeat([]byte("z"), 3000))
	fs := frames(t, exchange(t, c, rec, 1)[0])
	if len(fs) != 1 || fs[0].Type != proto.Error || !strings.Contains(string(fs[0].Body), "over 4168: send at most one frame") {
		t.Fatalf("got %v, want an ERROR about the record's size", fs)
	}
	if f := roundTrip(t, c, proto.Echo, []byte("next")); string(f.Body) != "next" {
		t.Fatalf("the session did not go on: %v", f)
	}
	// A record a few bytes over the largest answered fits pion's buffer
	// but not the session's: pion drops it with an error the session
	// recognizes by its text (errBufferTooSmall), and answers.
	rec = proto.AppendFrame(nil, proto.Echo, bytes.Repeat([]byte("y"), 4090))
	rec = proto.AppendFrame(rec, proto.Echo, []byte("z"))
	fs = frames(t, exchange(t, c, rec, 1)[0])
	if len(rec) <= 4104 || len(fs) != 1 || fs[0].Type != proto.Error || !strings.Contains(string(fs[0].Body), "record over 4104 bytes") {
		t.Fatalf("a record of %d bytes: got %v, want an ERROR about the record's size", len(rec), fs)
	}
	if f := roundTrip(t, c, proto.Echo, []byte("next")); string(f.Body) != "next" {
		t.Fatalf("the session did not go on: %v", f)
	}
}

// A client that vanishes (no close_notify, no more datagrams) is freed at
// the inactivity timeout; one that closes is freed at once.
func TestIdleAndClose(t *testing.T) {
	e := start(t, Options{IdleTimeout: 300 * time.Millisecond})
	c := e.dial()
	roundTrip(t, c, proto.Echo, []byte("hi"))
	began := time.Now()
	e.rec.waitFor(t, "the idle session closed", 10*time.Second, func() bool { return e.rec.closed[CloseIdleTimeout] == 1 })
	if d := time.Since(began); d < 250*time.Millisecond {
		t.Errorf("closed after %v, before the 300ms idle timeout", d)
	}
	c2 := e.dial()
	roundTrip(t, c2, proto.Echo, []byte("hi"))
	c2.Close()
	e.rec.waitFor(t, "the closed session counted", 10*time.Second, func() bool { return e.rec.closed[CloseEOF] == 1 })
	waitUntil(t, 5*time.Second, func() string {
		if h, p := e.g.counts(); h != 0 || p != 0 {
			return "the gate still knows " + itoa(p) + " addresses"
		}
		return ""
	})
}
