package proto

import "strconv"

// Type is a message type, the first header field. Replies carry the type of
// the request they answer, except [Error].
type Type uint32

// The message types of the Space Captain protocol. ECHO, REVERSE and TIME
// are the original C server's; KEYS is ours (the original server never sees
// it); ERROR appears only in replies.
const (
	Echo    Type = 0
	Reverse Type = 1
	Time    Type = 2
	Keys    Type = 3
	Error   Type = 0xFFFFFFFF
)

const (
	// HeaderSize is the size of a frame header: type and length, each a
	// little-endian uint32.
	HeaderSize = 8

	// DefaultMaxBody is the largest body a peer accepts unless configured
	// otherwise: the original C server's buffer size.
	DefaultMaxBody = 4096
)

// String returns the protocol's name for t ("ECHO", "REVERSE", "TIME",
// "KEYS", "ERROR"), or "Type(N)" for a type the protocol does not define.
func (t Type) String() string {
	switch t {
	case Echo:
		return "ECHO"
	case Reverse:
		return "REVERSE"
	case Time:
		return "TIME"
	case Keys:
		return "KEYS"
	case Error:
		return "ERROR"
	}
	return "Type(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// IsRequest reports whether t is a request type a server answers: ECHO,
// REVERSE, TIME or KEYS. Any other type, ERROR included, is answered with an
// ERROR reply (see [AppendReply]).
func (t Type) IsRequest() bool {
	return t <= Keys
}

// Frame is one decoded message. A Frame returned by [Parse] or
// [Decoder.Next] aliases the buffer it was decoded from: its Body is valid
// only until that buffer is reused, so copy it to keep it.
type Frame struct {
	Type Type
	Body []byte
}
