package server

// Engines returns the names of the engines this build supports, the default
// first. On Linux these are "epoll", which holds idle connections at a
// fraction of the memory, and the portable "goroutine".
func Engines() []string { return []string{engineEpoll, engineGoroutine} }

// newEngine returns the engine named name, one of Engines.
func newEngine(s *Server, name string) engine {
	if name == engineEpoll {
		return newEpollEngine(s)
	}
	return goroutineEngine{s}
}
