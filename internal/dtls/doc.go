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
// reads every datagram before pion does (gate.go): half-open handshakes
// are capped per source and in total (the oldest is dropped to make
// room), expire when the cookie does not come back, and a source is
// counted against MaxSessions and the per-source limits only once it has
// returned its cookie.
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
// A session is one goroutine of the server's (its handshake, then a read
// loop with a buffer of the largest record it answers) and the two pion
// keeps per connection. There is no epoll engine for DTLS: [Options] has no
// Engine. docs/BENCHMARKS.md has the memory an idle session costs.
package dtls
