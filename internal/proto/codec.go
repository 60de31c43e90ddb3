package proto

import (
	"encoding/binary"
	"io"
	"math"
)

// Parse decodes the frame at the front of b, a buffer of received bytes.
//
// It returns the frame and the number of bytes it took (HeaderSize plus the
// body). When b does not yet hold a whole frame it returns n == 0 and a nil
// error: read more and call again. A header whose length is over maxBody is
// rejected from the header alone, before the body is waited for, with a
// [*ProtocolError] of kind [KindTooLarge] (the returned Frame then carries the
// header's Type and no Body). The Body aliases b. Parse never allocates
// except to build that error.
func Parse(b []byte, maxBody int) (f Frame, n int, err error) {
	if len(b) < HeaderSize {
		return Frame{}, 0, nil
	}
	t, length := decodeHeader(b)
	if uint64(length) > uint64(max(maxBody, 0)) {
		return Frame{Type: t}, 0, tooLarge(length, maxBody)
	}
	end := HeaderSize + int(length)
	if len(b) < end {
		return Frame{}, 0, nil
	}
	return Frame{Type: t, Body: b[HeaderSize:end:end]}, end, nil
}

// decodeHeader decodes the header at the front of b, which holds at least
// HeaderSize bytes.
func decodeHeader(b []byte) (Type, uint32) {
	return Type(binary.LittleEndian.Uint32(b)), binary.LittleEndian.Uint32(b[4:])
}

// Need returns how many more bytes the frame begun at the front of b needs
// to be whole: the rest of its header, then the rest of its body; 0 when b
// holds it whole. A server that is stopping reads only that much, so that
// it answers the request begun and reads no other. Call it on bytes whose
// header, once whole, [Parse] has accepted: Need does not check the length
// against a maximum.
func Need(b []byte) int {
	if len(b) < HeaderSize {
		return HeaderSize - len(b)
	}
	_, length := decodeHeader(b)
	return max(HeaderSize+int(length)-len(b), 0)
}

// Truncated returns the error for a stream that ended partial bytes into a
// frame: a [*ProtocolError] of kind [KindTruncated] that wraps
// [io.ErrUnexpectedEOF].
func Truncated(partial int) error {
	return errorf(KindTruncated, "stream ended %d bytes into a frame: %w", partial, io.ErrUnexpectedEOF)
}

func tooLarge(length uint32, maxBody int) error {
	return errorf(KindTooLarge, "message length %d exceeds the maximum of %d bytes", length, maxBody)
}

// AppendFrame appends the frame {t, body} to dst and returns the extended
// buffer. It panics if body is longer than the length field can say
// (math.MaxUint32 bytes), which is a programming error.
func AppendFrame(dst []byte, t Type, body []byte) []byte {
	if uint64(len(body)) > math.MaxUint32 {
		panic("proto: frame body longer than 4 GiB")
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(t))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...)
}

// AppendError appends an ERROR frame whose body is reason, a short UTF-8
// sentence for people (e.g. "unknown message type 7").
func AppendError(dst []byte, reason string) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(Error))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(reason)))
	return append(dst, reason...)
}

// beginFrame appends a header for t whose length endFrame fills in once the
// body has been appended after it; at is where the header starts.
func beginFrame(dst []byte, t Type) (out []byte, at int) {
	at = len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(t))
	return binary.LittleEndian.AppendUint32(dst, 0), at
}

func endFrame(dst []byte, at int) []byte {
	binary.LittleEndian.PutUint32(dst[at+4:], uint32(len(dst)-at-HeaderSize))
	return dst
}

// minDecoderBuffer is the size a Decoder's buffer starts at: one TLS
// record's worth of plaintext (RFC 8446, section 5.1), so that one read can
// take a whole record of pipelined frames.
const minDecoderBuffer = 16 << 10

// Decoder pulls frames from an io.Reader, reading in batches into a buffer
// of its own and decoding every frame from it without allocating. The
// buffer starts at 16 KiB and grows, at most to HeaderSize plus the maximum
// body, only when a header that passed the size check announces a larger
// frame. A Decoder is not safe for concurrent use.
type Decoder struct {
	rd      io.Reader
	maxBody int
	buf     []byte
	r, w    int   // unread bytes are buf[r:w]
	err     error // the first read error, returned once buf[r:w] is used up
	perr    error // a protocol error, returned from then on
}

// NewDecoder returns a Decoder that reads frames from r and rejects bodies
// over maxBody bytes (zero or less means [DefaultMaxBody]).
func NewDecoder(r io.Reader, maxBody int) *Decoder {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	return &Decoder{rd: r, maxBody: maxBody}
}

// Next returns the next frame. Its Body aliases the Decoder's buffer and is
// valid until the following call to Next.
//
// At a clean end of stream, between frames, Next returns [io.EOF]. A stream
// that ends inside a frame gives a [*ProtocolError] of kind [KindTruncated];
// a header over the maximum, one of kind [KindTooLarge], returned before any
// more of the stream is read or any buffer is grown. Protocol errors are
// sticky: framing is lost after them. Read errors are returned as they
// come, once the frames buffered before them have been returned.
func (d *Decoder) Next() (Frame, error) {
	if d.perr != nil {
		return Frame{}, d.perr
	}
	for empty := 0; ; {
		f, n, err := Parse(d.buf[d.r:d.w], d.maxBody)
		if err != nil {
			d.perr = err
			return Frame{}, err
		}
		if n > 0 {
			d.r += n
			return f, nil
		}
		if d.err != nil {
			err := d.err
			if err == io.EOF && d.r < d.w {
				d.perr = Truncated(d.w - d.r)
				return Frame{}, d.perr
			}
			d.err = nil // a later Next may read again (e.g. after a timeout)
			return Frame{}, err
		}
		if d.fill() == 0 && d.err == nil {
			if empty++; empty >= 100 {
				return Frame{}, io.ErrNoProgress
			}
		}
	}
}

// fill makes room for the frame at buf[r:], reads once and returns how many
// bytes it got.
func (d *Decoder) fill() int {
	// Parse has checked the length against the maximum already.
	need := d.w - d.r + Need(d.buf[d.r:d.w])
	switch {
	case need > len(d.buf):
		size := max(need, minDecoderBuffer)
		if len(d.buf) > 0 {
			size = max(need, min(2*len(d.buf), HeaderSize+d.maxBody))
		}
		buf := make([]byte, size)
		d.w = copy(buf, d.buf[d.r:d.w])
		d.r, d.buf = 0, buf
	case d.r == d.w:
		d.r, d.w = 0, 0
	case len(d.buf)-d.r < need:
		d.w = copy(d.buf, d.buf[d.r:d.w])
		d.r = 0
	}
	n, err := d.rd.Read(d.buf[d.w:])
	d.w += n
	d.err = err
	return n
}

// Buffered returns the number of bytes read from the stream but not yet
// returned as frames. A pipelining client can use it to tell whether the
// next reply is already in hand.
func (d *Decoder) Buffered() int { return d.w - d.r }
