package dtls

// What the front end reads of a datagram before pion/dtls does: the first
// record's header and, for the two handshake messages of the cookie
// exchange, their cookie (RFC 6347, sections 4.1 and 4.2.1). Nothing here
// decrypts or allocates.

const (
	recordHeaderSize    = 13 // type, version, epoch, sequence number, length
	handshakeHeaderSize = 12 // type, length, message_seq, fragment offset and length

	contentHandshake = 22
	contentCID       = 25 // tls12_cid (RFC 9146): a record carrying a connection ID

	handshakeClientHello        = 1
	handshakeServerHello        = 2
	handshakeHelloVerifyRequest = 3

	// helloVerifyRequestSize is the size of pion/dtls's HelloVerifyRequest
	// datagram: the headers, a version and a 20-byte cookie. No ClientHello
	// shorter than it is let through, so the cookie reply is never larger
	// than what asked for it (no amplification; a well-formed ClientHello
	// is at least 67 bytes anyway).
	helloVerifyRequestSize = recordHeaderSize + handshakeHeaderSize + 2 + 1 + 20
)

// handshakeBody returns the body of the handshake message of type typ that
// starts the datagram's first record, at epoch 0, as far as the datagram
// holds it; ok is false for anything else.
func handshakeBody(d []byte, typ byte) (body []byte, ok bool) {
	if len(d) < recordHeaderSize+handshakeHeaderSize || d[0] != contentHandshake {
		return nil, false
	}
	if d[3] != 0 || d[4] != 0 { // epoch
		return nil, false
	}
	h := d[recordHeaderSize:]
	if h[0] != typ {
		return nil, false
	}
	if h[6] != 0 || h[7] != 0 || h[8] != 0 { // a first fragment (offset 0)
		return nil, false
	}
	recLen := int(d[11])<<8 | int(d[12])
	body = d[recordHeaderSize+handshakeHeaderSize:]
	if n := recLen - handshakeHeaderSize; n >= 0 && n < len(body) {
		body = body[:n]
	}
	return body, true
}

// clientHelloCookie reports whether d starts with a ClientHello and
// returns its cookie (empty for a first ClientHello). A ClientHello whose
// first fragment is too short to hold the cookie field is not one.
func clientHelloCookie(d []byte) (cookie []byte, ok bool) {
	b, ok := handshakeBody(d, handshakeClientHello)
	if !ok {
		return nil, false
	}
	p := 2 + 32 // client_version, random
	if len(b) <= p {
		return nil, false
	}
	p += 1 + int(b[p]) // session_id
	if len(b) <= p {
		return nil, false
	}
	n := int(b[p])
	if len(b) < p+1+n {
		return nil, false
	}
	return b[p+1 : p+1+n], true
}

// helloVerifyCookie reports whether d starts with a HelloVerifyRequest and
// returns its cookie.
func helloVerifyCookie(d []byte) (cookie []byte, ok bool) {
	b, ok := handshakeBody(d, handshakeHelloVerifyRequest)
	if !ok || len(b) < 3 {
		return nil, false
	}
	n := int(b[2])
	if len(b) < 3+n {
		return nil, false
	}
	return b[3 : 3+n], true
}

// cidRecordHeaderSize is the header of a DTLS 1.2 record with a
// connection ID of ConnectionIDLength bytes (RFC 9146, section 4): type,
// version, epoch, sequence number, the ID, length.
const cidRecordHeaderSize = 11 + ConnectionIDLength + 2

// recordConnectionID returns the connection ID of the datagram's first
// record when it carries one (content type tls12_cid); ok is false for
// anything else. The server's IDs all have ConnectionIDLength bytes.
func recordConnectionID(d []byte) (id [ConnectionIDLength]byte, ok bool) {
	if len(d) < cidRecordHeaderSize || d[0] != contentCID {
		return id, false
	}
	copy(id[:], d[11:11+ConnectionIDLength])
	return id, true
}

// serverHelloSuite reports whether d starts with a ServerHello and
// returns its cipher suite.
func serverHelloSuite(d []byte) (suite uint16, ok bool) {
	b, ok := handshakeBody(d, handshakeServerHello)
	if !ok {
		return 0, false
	}
	p := 2 + 32 // server_version, random
	if len(b) <= p {
		return 0, false
	}
	p += 1 + int(b[p]) // session_id
	if len(b) < p+2 {
		return 0, false
	}
	return uint16(b[p])<<8 | uint16(b[p+1]), true
}
