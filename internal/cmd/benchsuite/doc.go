// Command benchsuite runs the benchmark matrix of scripts/bench.sh and writes
// docs/BENCHMARKS.md: every scenario against every server (sc-server with
// each engine, and the plain crypto/tls reference server, refserver), a
// fresh server process for every run, several runs interleaved so that
// the servers compared share the machine's moods, medians of the runs,
// and each issue-6 target with its measured value and whether it is met.
//
// The server and the load generator (sc-client bench) are separate
// processes on 127.0.0.1; every run is bounded in time. With -smoke it runs
// each mode once with tiny counts and fails unless every report is
// well-formed JSON with no errors: the seconds-long check CI runs.
//
// It is a helper of scripts/bench.sh, which builds the binaries, makes the
// certificates and runs the Go benchmarks first; see that script for the
// flags it passes.
package main
