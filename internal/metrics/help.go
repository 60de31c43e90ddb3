package metrics

// The help texts of the metrics both transports report. A family's help
// must be the same on every series (Prometheus's registry checks it at
// each scrape), so the TCP and DTLS series share these.
const (
	helpConnectionsOpen     = "Connections held now: accepted and not yet closed, handshakes included. Counted against the server's max conns."
	helpConnectionsAccepted = "Connections accepted and counted against max conns; each is later counted once in " + NameConnectionsClosed + "."
	helpConnectionsRefused  = "Connections closed at once without being served, by reason (max_conns: the server was full; shutting_down; source_conns and source_rate: the client's address, or IPv6 /64, held too many connections or opened them too fast; proxy_header: a trusted load balancer's connection did not begin with a good PROXY protocol header)."
	helpConnectionsClosed   = "Accepted connections closed, by reason."
	helpProtocolErrors      = "Requests that broke the protocol, by kind (unknown_type: answered with ERROR, the connection goes on; too_large and truncated: the connection is closed)."
	helpHandshakeDuration   = "Time a successful TLS handshake took, from its start just after accept, by resumed (failed handshakes are only counted, in " + NameHandshakes + ")."
	helpRequests            = "Requests answered, by type (echo, reverse, time, keys). Requests of other types are counted in " + NameProtocolErrors + " as unknown_type."
	helpRequestDuration     = "Latency of one request inside the server, by type: from the start of the batch of pipelined requests that held it (just after the read that brought it) to its reply built, so for a client that waits for each reply the time to build it. Network time, time in socket buffers and the write of the replies are not included."
	helpRequestBytes        = "Bytes of request frames answered, headers included, by type (protocol bytes, not TLS or TCP)."
	helpReplyBytes          = "Bytes of the replies to them, headers included, by request type."
	helpConnectionsMax      = "The server's connection limit (max conns)."
	helpHandshakes          = "TLS handshakes, by result (ok, timeout, client_closed, not_tls, client_alert, error, key_unavailable: the server's key failed to sign, as a key in a PKCS#11 token does when the token stops answering; a client the server refused: no_client_cert, unknown_client, client_revoked, client_cert_expired, bad_client_chain), TLS version (1.2, 1.3; unknown when it failed before one was chosen) and resumed (true for a resumed session, false for a full handshake)."
)
