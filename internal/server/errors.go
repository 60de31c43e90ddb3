package server

import "errors"

// ErrServerClosed is returned by [Server.Serve] after [Server.Shutdown] has
// been called, like [net/http.ErrServerClosed]: it is the normal end of a
// graceful stop, not a failure.
var ErrServerClosed = errors.New("server: closed")
