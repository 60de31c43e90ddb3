package proto

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// TimeLayout is the format of a TIME reply: the server's clock in UTC, to the
// second, as the original C server sends it.
const TimeLayout = "2006-01-02T15:04:05Z"

// Env is what replies depend on besides the request: the clock and the key
// pins. The zero Env is usable: the real clock, and KEYS not supported.
type Env struct {
	// Now returns the time a TIME reply reports. Nil means time.Now.
	Now func() time.Time
	// Keys returns the body of a KEYS reply (see [AppendKeys]). It is called
	// once per KEYS request, so it must be cheap and safe for concurrent
	// use. Nil means the server does not support KEYS; a nil or empty
	// result means it has no pins to give. Either way the client gets an
	// ERROR reply.
	Keys func() []byte
	// ClientPin and ClientName are the identity the client of this
	// connection proved with its certificate: a KEYS reply then ends in
	// the line "client PIN" or "client PIN NAME" (see [AppendKeysClient]).
	// Empty for an anonymous client: no such line.
	ClientPin, ClientName string
}

// AppendReply appends to dst the reply to req and returns the extended
// buffer. It is the protocol's message semantics, shared by every server
// engine:
//
//   - ECHO returns the body unchanged.
//   - REVERSE returns the body reversed: by runes when it is valid UTF-8,
//     else by bytes.
//   - TIME returns env's clock in UTC as [TimeLayout].
//   - KEYS returns env.Keys() (an ERROR when there is none), then, for a
//     client that presented a certificate, its "client" line.
//   - Any other type gets an ERROR reply, "unknown message type N"; the
//     connection can go on, framing is intact.
//
// Compatibility with the original C client, which sends NUL-terminated
// strings: when a request body ends in exactly one NUL byte, the reply's
// text ends in one NUL too. REVERSE reverses the text before it and leaves
// the NUL at the end; TIME appends one. A body that ends in more than one
// NUL is plain bytes.
//
// AppendReply does not allocate when dst has room, except for the ERROR
// replies. Replies to ECHO and REVERSE are as long as the request, so a
// server that caps requests caps these replies too.
func AppendReply(dst []byte, req Frame, env Env) []byte {
	switch req.Type {
	case Echo:
		return AppendFrame(dst, Echo, req.Body)
	case Reverse:
		text, nul := splitNUL(req.Body)
		dst, at := beginFrame(dst, Reverse)
		dst = appendReversed(dst, text)
		if nul {
			dst = append(dst, 0)
		}
		return endFrame(dst, at)
	case Time:
		_, nul := splitNUL(req.Body)
		now := time.Now
		if env.Now != nil {
			now = env.Now
		}
		dst, at := beginFrame(dst, Time)
		dst = now().UTC().AppendFormat(dst, TimeLayout)
		if nul {
			dst = append(dst, 0)
		}
		return endFrame(dst, at)
	case Keys:
		if env.Keys == nil {
			return AppendError(dst, "KEYS not supported")
		}
		body := env.Keys()
		if len(body) == 0 {
			return AppendError(dst, "KEYS: no key pins available")
		}
		if env.ClientPin == "" {
			return AppendFrame(dst, Keys, body)
		}
		dst, at := beginFrame(dst, Keys)
		dst = append(dst, body...)
		dst = AppendKeysClient(dst, env.ClientPin, env.ClientName)
		return endFrame(dst, at)
	}
	return AppendUnknownType(dst, req.Type)
}

// AppendUnknownType appends the ERROR reply to a request of type t that the
// server does not define: "unknown message type N".
func AppendUnknownType(dst []byte, t Type) []byte {
	dst, at := beginFrame(dst, Error)
	dst = append(dst, "unknown message type "...)
	dst = strconv.AppendUint(dst, uint64(t), 10)
	return endFrame(dst, at)
}

// splitNUL returns b without its terminating NUL, and whether it had exactly
// one.
func splitNUL(b []byte) (text []byte, nul bool) {
	n := len(b)
	if n > 0 && b[n-1] == 0 && (n == 1 || b[n-2] != 0) {
		return b[:n-1], true
	}
	return b, false
}

// appendReversed appends b reversed by runes when it is valid UTF-8 and by
// bytes otherwise. Valid UTF-8 re-encodes to the same bytes, so copying each
// rune's bytes to its mirrored place is the same as decoding and encoding it.
func appendReversed(dst, b []byte) []byte {
	n := len(dst)
	dst = slices.Grow(dst, len(b))[:n+len(b)]
	out := dst[n:]
	if !utf8.Valid(b) {
		for i, c := range b {
			out[len(b)-1-i] = c
		}
		return dst
	}
	for i := 0; i < len(b); {
		if c := b[i]; c < utf8.RuneSelf {
			out[len(b)-1-i] = c
			i++
			continue
		}
		_, size := utf8.DecodeRune(b[i:])
		copy(out[len(b)-i-size:], b[i:i+size])
		i += size
	}
	return dst
}
