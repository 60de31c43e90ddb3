// Package certcmd holds the commands of sc-cert: init, create, inspect,
// fingerprint, verify, rotate and pin (list, add, forget, show), built by
// [NewRootCmd] so that tests can run them in process (SetArgs, SetOut) and
// cmd/sc-cert stays a few lines.
//
// Each command comes from a newXCmd constructor with an xOptions struct and
// a runX function; the logic is in package pki (and pinning for pins), the
// commands only parse flags and print. New subcommands are added to the
// list in [subcommands].
package certcmd
