//go:build race

package server

// raceEnabled: the race detector makes a TLS handshake ~15 times slower.
const raceEnabled = true
