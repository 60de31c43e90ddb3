// Package benchcmd is the bench command of sc-client: a load generator for
// a Space Captain server (package internal/bench), built by [NewCmd] so that
// sc-client's root can mount it and tests can run it in process.
package benchcmd
