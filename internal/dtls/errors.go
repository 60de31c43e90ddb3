package dtls

import "errors"

// ErrServerClosed is returned by [Server.Serve] after [Server.Shutdown]
// has been called: the normal end of a graceful stop, not a failure.
var ErrServerClosed = errors.New("dtls: server closed")
