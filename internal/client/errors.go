package client

import (
	"errors"
	"fmt"

	"github.com/spacecaptain/spacecaptain/internal/proto"
)

// ServerError is an ERROR reply: the server understood the framing but
// refused the request. Use [errors.As] to get at it.
type ServerError struct {
	// Type is the type of the request the server refused.
	Type proto.Type
	// Reason is the server's explanation, the ERROR body (e.g. "unknown
	// message type 7", "KEYS not supported").
	Reason string
}

// Error says which request the server refused and why.
func (e *ServerError) Error() string {
	return fmt.Sprintf("server refused the %v request: %s", e.Type, e.Reason)
}

// ErrBodyTooLarge is returned by Send and Do for a request body over
// Options.MaxMessage; nothing is sent.
var ErrBodyTooLarge = errors.New("client: request body over the maximum message size")
