// Package soak holds a real sc-server under a game's load for a long time
// while its certificate rotates, samples what the server and its clients
// do every few seconds, and judges the run: scripts/soak.sh drives it
// through internal/cmd/soak.
//
// [Run] starts sc-server (the binaries of [Options.Bin]) on 127.0.0.1 with
// a Kubernetes-style certificate directory, then keeps it busy with
//   - [Options.Conns] held connections, each sending a heartbeat ECHO every
//     [Options.Heartbeat] (the latency population of the run);
//   - [Options.PingPong] connections in ping-pong, paced to
//     [Options.PingPongRate] ECHOs a second each;
//   - [Options.NewRate] new connections a second, each doing one ECHO and
//     closing;
//
// and every [Options.RotateEvery] rotates the certificate, cycling the four
// ways a change reaches a server: a keep-key sc-cert rotate, sc-cert rotate
// --promote-next (a new key), a "..data" symlink swap as a Kubernetes
// secret update does, and a keep-key rotate followed at once by SIGHUP.
//
// The clients trust the server as players do: most by trust on first use,
// each of [Options.Players] players with a known-hosts file of its own,
// learning the next key from KEYS after every handshake as sc-client does;
// one connection in [Options.CAEvery] trusts the local CA instead. A key
// change happens only once every player has learned the key it moves to,
// so a client that is refused (a lockout) is a failure of the server or of
// the rotation, never of the plan.
//
// Every [Options.Sample] it records a [Sample] — the server's RSS, heap in
// use, goroutines, open descriptors, GC pauses and CPU, and the clients'
// heartbeat latency, errors and reconnects — as a CSV line, and at the end
// [Evaluate] checks the criteria and [Run] returns a [Summary].
// Every process it starts is stopped by its PID before Run returns.
package soak
