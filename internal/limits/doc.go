// Package limits is the per-source limits table that both servers apply:
// the TCP server (internal/server) when it accepts a connection, the DTLS
// server (internal/dtls) when a client returns its cookie. It imports
// nothing of ours, so either server may use it without depending on the
// other.
//
// The entry points are [Key], which names the source an address counts
// against (an IPv4 address, or an IPv6 /64), and [Table], which counts
// each source's connections and holds a token bucket of its new ones:
// [New], [Table.Admit] and [Table.Release].
package limits
