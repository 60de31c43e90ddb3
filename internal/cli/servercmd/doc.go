// Package servercmd is sc-server: the command that serves the Space Captain
// protocol over TLS, built by [NewRootCmd] so that tests can run it in
// process (SetArgs, SetOut) and cmd/sc-server stays a few lines.
//
// It wires the pieces together and holds no protocol logic: flags become
// the Options of the server core (internal/server) and its TLS
// configuration; certificates come from package pki — created on the first
// run when the default layout is missing — through a certificate source
// whose GetCertificate and KEYS body the server calls, with shared or
// in-memory session-ticket keys and self-renewal beside it; logs go
// through log/slog, text for people and JSON for machines.
//
// With --metrics-listen it also serves package metrics' /metrics, /healthz
// and /readyz on a listener of its own, bound before anything else so the
// probes answer while the server starts; the server core and the
// certificate source report to it. With --check it loads and checks
// everything a start would (run.go, check.go), prints what it found and
// exits without listening.
package servercmd
