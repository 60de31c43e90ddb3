//go:build !linux

package server

// Engines returns the names of the engines this build supports, the default
// first. Outside Linux that is the portable "goroutine" engine alone.
func Engines() []string { return []string{engineGoroutine} }

// newEngine returns the engine named name, one of Engines.
func newEngine(s *Server, name string) engine { return goroutineEngine{s} }

// loopConn is the epoll engine's per-connection state, which this platform
// does not have.
type loopConn struct{}
