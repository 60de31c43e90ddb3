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
// # Engines
//
// How connections are driven is an engine, chosen by [Options.Engine];
// [Engines] lists the ones this build has. Every engine has the same
// behaviour, the same [Events] and passes the same tests. "goroutine" is the
// portable engine: one goroutine per connection on Go's runtime netpoller,
// crypto/tls on top.
//
// # Behaviour
//
// Whatever the engine, a connection is refused at once past
// [Options.MaxConns]; its handshake is bounded by [Options.HandshakeTimeout];
// while it waits for a request it holds no buffer of the server's own and is
// cut after [Options.IdleTimeout]; every write is bounded by
// [Options.WriteTimeout], so a client that stops reading cannot grow the
// server's memory. Pipelined requests are read in batches and all the
// replies to a batch go out in one write (one TLS record where they fit).
// An unknown message type gets an ERROR reply and the connection goes on; a
// length over [Options.MaxMessage] gets an ERROR reply and the connection is
// closed, because framing is lost.
//
// Metrics plug in through [Options.Events]; logs go to [Options.Logger] with
// stable snake_case keys, per-connection events at Debug and lifecycle at
// Info.
package server
