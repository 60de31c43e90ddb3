//go:build race

package servercmd

// raceEnabled: the race detector makes parsing and TLS handshakes about
// ten times slower; the load tests scale down under it and scripts/test.sh
// runs them at full size without it.
const raceEnabled = true
