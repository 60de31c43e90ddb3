// Package watch follows files on disk for the reloaders of the toolkit —
// the certificate source, the next key and the ticket keys of package pki,
// and the client lists of package pinning — so that every file the server
// trusts is reloaded the same way: on a file event in its directory
// (debounced), on a periodic check, and after a watch had to be
// re-established. [Run] is the entry point; an explicit reload (SIGHUP) is
// the reloader's own call.
//
// It imports nothing else of this module, so that pki and pinning, which
// may not import each other, can both use it.
package watch
