// Package servercmd is sc-server: the command that serves the Space Captain
// protocol over TLS, built by [NewRootCmd] so that tests can run it in
// process (SetArgs, SetOut) and cmd/sc-server stays a few lines.
//
// It wires the pieces together and holds no protocol logic: flags become
// the Options of the server core (internal/server) and its TLS
// configuration; certificates come from package pki — created on the first
// run when the default layout is missing — through a certificate source
// whose GetCertificate and KEYS body the server calls; logs go through
// log/slog, text for people and JSON for machines.
package servercmd
