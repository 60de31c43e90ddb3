// Package server is the Space Captain server core: the accept loop, TLS
// handshakes, the connection lifecycle and the protocol handlers.
//
// Build a [Server] with [New] from an [Options] value, run it with
// [Server.Serve] on a listener, and stop it with [Server.Shutdown]:
//
//	srv, err := server.New(server.Options{TLSConfig: cfg, Keys: keys})
//	if err != nil {
//		return err
//	}
//	ln, err := net.Listen("tcp", ":4242")
//	if err != nil {
//		return err
//	}
//	errc := make(chan error, 1)
//	go func() { errc <- srv.Serve(context.Background(), ln) }()
//	<-ctx.Done() // e.g. from signal.NotifyContext on SIGINT and SIGTERM
//	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
//	defer cancel()
//	err = srv.Shutdown(sctx)  // nil once every connection has drained
//	<-errc                    // server.ErrServerClosed
//
// # A connection's life
//
// The life of a connection is written once (conn.go): the accept loop
// admits it (accept.go, limits.go) and starts a goroutine for it, which
// reads a PROXY protocol header first when it comes from a trusted
// balancer (proxy.go), runs the TLS handshake under the handshake deadline
// and hands the connection to its engine. The engine waits for requests in
// its own way and, after each read, runs the batch step (batch.go): answer
// every whole frame read, write all their replies in one write, keep the
// start of a frame not yet whole for the next read. The engine calls
// finish once the connection ends, whoever ends it.
//
// # Engines
//
// How connections are driven is an engine, chosen by [Options.Engine];
// [Engines] lists the ones this build has, the default first. Every engine
// has the same behaviour, the same [Events] and logs, and passes the same
// tests.
//
// "goroutine" is the portable engine (Linux, macOS, Windows): one goroutine
// per connection, blocked in Read on Go's runtime netpoller, crypto/tls on
// top. An idle TLS connection holds its goroutine's stack, about 8 KB, and
// the 128 bytes it reads a short request into.
//
// "epoll" (Linux) holds an established, idle TLS connection with no
// goroutine and no buffer of the server's own: only its socket, its
// tls.Conn (crypto/tls keeps about 3.5 KB of buffers per connection that
// no API releases, about 5 KB after a 4 KB record) and a slot in a table.
// Each connection's handshake runs on a goroutine of its own over Go's
// netpoller, under [Options.HandshakeTimeout], as in the goroutine engine.
// Then the engine takes the socket (SyscallConn and dup, then closing the
// *net.TCPConn, which removes the runtime's epoll registration) into an
// epoll set of its own, edge-triggered, and a bounded pool of workers (four,
// or twice GOMAXPROCS) serves the connections epoll reports ready. One
// worker at a time polls: it serves a lone ready connection itself, which
// spares a round trip the thread wake-up of handing it to another
// goroutine, and signals idle workers when more are ready; a watchdog makes
// another worker poll when a connection's run takes over 10 ms (a slow
// Keys or Events callback), noticed within 100 ms. The epoll descriptor
// itself is parked on Go's netpoller, so a waiting poller holds no thread.
// A sweep every sixteenth of the shorter of IdleTimeout and WriteTimeout
// (5 ms to 250 ms) cuts connections whose deadline has passed, so a
// connection may be cut up to one sweep late. Connections that a listener
// wraps (anything but a *net.TCPConn, such as a PROXY protocol reader,
// which may hold bytes the socket no longer has) are served the goroutine
// engine's way (the server's own PROXY protocol support, below, leaves
// the socket as it was). After a burst of handshakes the engine returns the
// memory they freed to the operating system ([Options.KeepFreedMemory]).
//
// How the epoll engine drives crypto/tls, unmodified, through a net.Conn
// of its own that is non-blocking after the hand-off, is written next to
// the code those rules constrain, each rule with the crypto/tls code it
// comes from: the transport's type (epoll_transport_linux.go), the
// hand-off (epoll_engine_linux.go) and a worker's run
// (epoll_serve_linux.go).
//
// # Behaviour
//
// Whatever the engine, a connection is refused at once past
// [Options.MaxConns], or past its source's per-source limits
// ([Options.SourceMaxConns], [Options.SourceHandshakeRate]; a source is an
// IPv4 address or an IPv6 /64), before any handshake work; its handshake
// is bounded by [Options.HandshakeTimeout]; while it waits for a request
// it holds none of the server's pooled buffers and is cut after
// [Options.IdleTimeout], and a request that has begun must be whole
// within IdleTimeout of its first byte, however slowly its bytes come;
// every write is bounded by [Options.WriteTimeout], so a client that stops
// reading cannot grow the server's memory. Deadlines are kept per batch,
// not per request. Pipelined requests are read in batches and all the
// replies to a batch go out in one write (one TLS record where they fit).
// An unknown message type gets an ERROR reply and the connection goes on; a
// length over [Options.MaxMessage] gets an ERROR reply and the connection is
// closed, because framing is lost.
//
// Metrics plug in through [Options.Events]; logs go to [Options.Logger] with
// stable snake_case keys, per-connection events at Debug and lifecycle at
// Info. With Events set, requests are timed once per 16 of a batch, not
// one by one: [Events] says what Message's duration measures.
//
// # Per-source limits
//
// One host opening TLS connections as fast as it can would take every
// core (a TLS handshake costs the server milliseconds of CPU with an
// RSA-4096 key; docs/BENCHMARKS.md). So the server
// keeps, per source, a count of its connections and a token bucket of new
// ones (limits.go), and refuses a connection past either on the accept
// loop: look up, close. The table of sources is bounded; see
// [Options.SourceHandshakeRate] for what happens at the bound. Both limits
// are on by default, with generous values; load tests from one address
// turn them off.
//
// # PROXY protocol
//
// Behind a TCP load balancer every connection comes from the balancer.
// With [Options.ProxyProtocolFrom], connections from the listed balancers
// must begin with a PROXY protocol header (v1 or v2), read on the
// connection's goroutine — never on the accept loop — under the handshake
// deadline, byte-exact, so that the ClientHello behind it stays in the
// socket and the epoll engine can still take the socket over
// (proxy.go). The client's address in it is what the logs (remote_addr,
// with proxy_addr the balancer) and the per-source limits see; those
// limits are applied once the header is read. A header from anywhere else
// is never honoured.
package server
