// Package dtls serves the Space Captain protocol over DTLS 1.2 on UDP,
// with the certificates, pins and rotation of the TCP server: the
// certificate comes from a GetCertificate callback (pki.CertReloader's, wired by
// the CLI), so every reload reaches DTLS handshakes too.
//
// Build a [Server] with [New] from an [Options] value, run it with
// [Server.Serve] on a UDP socket, and stop it with [Server.Shutdown]:
//
//	srv, err := dtls.New(dtls.Options{GetCertificate: src.GetCertificate, Keys: keys})
//	pc, err := net.ListenPacket("udp", ":4242")
//	go func() { errc <- srv.Serve(context.Background(), pc) }()
//	...
//	err = srv.Shutdown(ctx) // close_notify to every session
//
// The DTLS stack is github.com/pion/dtls (v4), configured for DTLS 1.2
// only, ECDHE with AEAD suites only ([CipherSuites]), the extended master
// secret required, the cookie exchange (HelloVerifyRequest) always on, and
// connection IDs (RFC 9146) with return routability checks (RFC 9853), so
// that a client whose NAT rebinds keeps its session.
//
// # Spoofed handshakes
//
// pion keeps state for every address that sends a ClientHello, and its
// cookie is random and kept with that state, so a stateless cookie front
// end cannot hand a proved client over to it (docs/SECURITY.md has the
// experiment). The server bounds that state instead, in a front end that
// reads every datagram itself and hands it to pion (gate.go): half-open
// handshakes are capped per source and in total (the oldest is dropped to
// make room), expire when the cookie does not come back, and a source is
// counted against MaxSessions and the per-source limits only once it has
// returned its cookie. First ClientHellos wait in a bounded queue for the
// workers that make their half-opens, so that a flood of them cannot hold
// up the datagrams of the sessions that exist.
//
// # Framing
//
// The frames are the TCP protocol's (package proto). A record carries one
// or more whole frames; a record that breaks a frame gets an ERROR reply
// and the session goes on. The replies to one record go out in datagrams
// of at most [Options.MaxDatagram] bytes, split at frame boundaries. The
// server keeps no reply state: a client that loses a reply asks again.
//
// # Goroutines and memory
//
// pion runs in its detached mode (DetachedConn): the server moves the
// datagrams, routes records by connection ID and address, and sends what
// pion's retransmission timers make. A session is no goroutine and no
// buffer of the server's: a few readers per socket read the datagrams,
// and each is handled on the goroutine that read it, a session's one at a
// time. pion keeps two goroutines per connection (its handshake state
// machine, which answers a retransmitted last flight, and its record
// reader) and one receive buffer of the largest record answered. There is
// no epoll engine for DTLS: [Options] has no Engine. docs/BENCHMARKS.md has
// the memory an idle session costs and the CPU a handshake costs.
package dtls
