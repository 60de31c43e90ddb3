package proto

import (
	"errors"
	"fmt"
)

// The kinds of [ProtocolError]. They are stable snake_case words, fit for a
// metrics label; new kinds may be added.
const (
	// KindTooLarge: a header announced a body over the maximum. The frame
	// boundary is lost, so the connection cannot go on.
	KindTooLarge = "too_large"
	// KindTruncated: the stream ended in the middle of a frame.
	KindTruncated = "truncated"
	// KindUnknownType: a request of a type the server does not define. Not a
	// decode error (the frame is well formed and the connection goes on); it
	// is listed here so that servers count it under the same label.
	KindUnknownType = "unknown_type"
	// KindBadKeys: a KEYS reply body that does not parse.
	KindBadKeys = "bad_keys"
	// KindUnexpectedReply: a reply whose type matches no request (clients).
	KindUnexpectedReply = "unexpected_reply"
)

// ProtocolError is the error for input that breaks the protocol: every
// decode error of this package is one. Use [errors.As] to get at the Kind.
type ProtocolError struct {
	// Kind says what went wrong in one stable word, one of the Kind…
	// constants.
	Kind string
	// Err describes the problem for people; it may wrap a cause such as
	// [io.ErrUnexpectedEOF].
	Err error
}

// Error returns the description, without the kind.
func (e *ProtocolError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *ProtocolError) Unwrap() error { return e.Err }

// errorf makes the *ProtocolError for kind; format and args are as for
// fmt.Errorf, %w included.
func errorf(kind, format string, args ...any) error {
	return &ProtocolError{Kind: kind, Err: fmt.Errorf(format, args...)}
}

// KindOf returns the Kind of the first [*ProtocolError] in err's chain, or
// "" when there is none.
func KindOf(err error) string {
	if pe, ok := errors.AsType[*ProtocolError](err); ok {
		return pe.Kind
	}
	return ""
}
