// Package proto is the Space Captain wire protocol: the frame codec, the
// message types, the size limit and the reply semantics that every server
// engine shares.
//
// Every message, both ways, is an 8-byte little-endian header {type uint32,
// length uint32} followed by length body bytes; docs/PROTOCOL.md describes
// the messages and the limits. The entry points are:
//
//   - [Parse], which takes one frame from the front of a byte slice (for an
//     engine that owns its buffers), and [Decoder], which pulls frames from an
//     [io.Reader] through a buffer of its own. Neither allocates per frame,
//     and both reject a length over the maximum from the header alone.
//   - [AppendFrame] and [AppendError], which encode a frame onto a buffer.
//   - [AppendReply], the message semantics (ECHO, REVERSE, TIME, KEYS and the
//     ERROR answer to an unknown type), in the one place both server engines
//     call.
//   - [ParseKeySet] and [AppendKeySet] (and the older [ParseKeys] and
//     [AppendKeys]), the body of a KEYS reply.
//   - [Need], how much of a frame begun is still to come, and [Truncated],
//     the error for a stream that ends inside one: header arithmetic stays
//     here, so that an engine never decodes a header itself.
//
// Decode errors are [*ProtocolError] values whose Kind ([KindOf]) is a
// stable snake_case word fit for a metrics label.
package proto
