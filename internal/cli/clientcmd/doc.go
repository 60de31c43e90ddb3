// Package clientcmd is sc-client: the command that talks the Space Captain
// protocol to a server — echo, reverse, time, keys and chat — built by
// [NewRootCmd] so that tests can run it in process (SetArgs, SetIn,
// SetOut) and cmd/sc-client stays a few lines.
//
// Trust is decided by package pinning from the flags: --ca (a CA file),
// --pin (key pins; with --ca both must hold), --insecure (nothing is
// checked), and otherwise trust on first use against the known-hosts store
// (--known-hosts, --tofu). After a verified handshake a trust-on-first-use
// client asks the server KEYS and records the pins it announces, so that it
// follows the server through a planned key rollover. The protocol itself is
// package internal/client's.
package clientcmd
