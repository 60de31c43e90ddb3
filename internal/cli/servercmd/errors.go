package servercmd

import "errors"

// errNotListening is the "listening" readiness check's answer while the
// game port does not accept connections: before it is bound, and from the
// start of a graceful stop, so that a load balancer takes the instance out
// before its connections drain.
var errNotListening = errors.New("not accepting connections (starting, or draining to stop)")
