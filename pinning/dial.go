package pinning

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

// Dial connects to addr on the named network (as net.Dial does, "tcp" for
// a Space Captain server), completes the TLS handshake under t's trust
// decision and records what the handshake proved, as [Trust.DialContext]
// does with context.Background().
func (t *Trust) Dial(network, addr string) (*tls.Conn, error) {
	return t.DialContext(context.Background(), network, addr)
}

// DialContext connects to addr on the named network, completes the TLS
// handshake with [Trust.Config] (ctx bounds the connect and the handshake)
// and, once the server has proved it holds the key, calls [Trust.Record]:
// in [ModeTOFU] the first connection to a host creates the store and
// records its key, and later ones find a changed key refused with
// [*KeyError]. The connection is returned only when both succeeded; on any
// error it is closed and nil is returned, so that no key goes unrecorded.
//
// When t has a Host, addr must be that host (any spelling of it: the
// address is canonicalized as the store does), because Host is whose key
// is checked and recorded; a different addr is refused before dialing.
// Use [Trust.Host] as addr, or the address Host resolves to by giving
// that address as Host.
//
// To record what the server announces about its next keys, call
// [Trust.RecordAnnounced] with the returned connection's
// ConnectionState. A caller that wants to see [Recorded] (to tell a
// person "first use", say) uses [Trust.Config] and [Trust.Record]
// itself.
func (t *Trust) DialContext(ctx context.Context, network, addr string) (*tls.Conn, error) {
	if t.host != "" {
		h, err := canonicalHost(addr)
		if err != nil {
			return nil, fmt.Errorf("dialing: %w", err)
		}
		if h != t.host {
			return nil, fmt.Errorf("dialing %s: this trust decision is for %s", addr, t.host)
		}
	}
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: t.Config()}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conn := c.(*tls.Conn)
	if _, err := t.Record(conn.ConnectionState()); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}
