package server

// Engines returns the names of the engines this build supports, the default
// first. On Linux these are "epoll" and the portable "goroutine".
func Engines() []string { return []string{engineGoroutine, engineEpoll} }

// newEngine returns the engine named name, one of Engines.
func newEngine(s *Server, name string) engine {
	if name == engineEpoll {
		return newEpollEngine(s)
	}
	return goroutineEngine{s}
}
