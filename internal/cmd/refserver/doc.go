// Command refserver is the reference server of scripts/bench.sh: a plain
// crypto/tls server of the Space Captain protocol, written the way one
// usually is — one goroutine per connection, a bufio.Reader, one reply
// built and written (one TLS record, one system call) per request, no
// batching, and crypto/tls's defaults for everything else (dynamic record
// sizing, session tickets, groups, suites, no handshake timeout). The
// issue-6 targets ("a one-record-per-reply server", "a plain crypto/tls
// server") are measured against it in the same run as sc-server.
//
// With --client-allow FILE it is the mutual TLS yardstick of issue 14:
// crypto/tls requires a client certificate (tls.RequireAnyClientCert) and
// the allow list in FILE admits it by its key's pin, through pinning's
// client verifier in VerifyConnection, the check sc-server --client-auth
// require --client-allow FILE makes. The file is read once. Without the
// flag nothing changes: no client certificate is asked for.
//
// It is a benchmark fixture, not a product: it has no connection limit,
// no deadlines and no certificate reloading.
//
//	refserver --listen 127.0.0.1:4343 --cert server.crt --key server.key
//	refserver --listen 127.0.0.1:4343 --plaintext
//	refserver --listen 127.0.0.1:4343 --cert server.crt --key server.key --client-allow allow
package main
