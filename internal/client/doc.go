// Package client talks the Space Captain protocol to a server: it dials
// (with whatever trust policy the caller's tls.Config carries), sends
// requests and reads replies, one at a time or pipelined.
//
// [Dial] returns a [Conn]. [Conn.Do] sends one request and waits for its
// reply; [Conn.Send], [Conn.Flush] and [Conn.Receive] pipeline many
// requests before reading their replies, which come back in order;
// [Conn.ReadReply] reads them on a goroutine of its own while another
// keeps sending.
// [Conn.Keys] fetches and parses the server's key pins.
//
// An ERROR reply is a [*ServerError]; a reply that breaks the protocol is a
// [*proto.ProtocolError]. The caller builds the tls.Config: package pinning
// makes configs that verify pins, trust on first use or a CA, and this
// package neither imports it nor changes the config's verification.
package client
