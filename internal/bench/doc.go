// Package bench is the Space Captain load generator behind sc-client bench:
// it drives a server in one of four modes, times every operation and, for a
// server on the same machine, samples its CPU time and memory from /proc so
// that every figure can be given per server CPU-second and per connection.
//
// [New] checks [Options] and returns a [Bench]; [Bench.Run] runs it and
// returns a [Report], which renders itself with [Report.WriteText] or as
// JSON. [Bench.Progress] feeds a progress bar while it runs. [ReadProc]
// reads a process's CPU time and resident memory.
//
// # Modes
//
//   - [ModeHandshake]: connection after connection, each a full TLS
//     handshake (or a resumed one, [Options.Resume]) and one ECHO.
//   - [ModeEcho]: N connections, each sending an ECHO and waiting for its
//     reply, over and over.
//   - [ModePipeline]: N connections, each writing D ECHOs at once before
//     reading their replies.
//   - [ModeIdle]: N connections opened, one ECHO on each, then held: the
//     server's memory per idle connection, and whether it holds them all.
//
// # What is measured
//
// A run first makes one probe connection, which tells the TLS parameters
// and warms up both ends; then it samples the server's memory. The
// measured phase excludes opening the echo and pipeline modes'
// connections, so their figures are about messages alone. The server's
// CPU time is utime+stime of /proc/PID/stat (10 ms ticks), its memory
// VmRSS of /proc/PID/status. Latencies go to a log-linear histogram
// (HdrHistogram's layout) with under 1% error.
//
// The load generator and the server share the machine's CPUs, so
// operations per second say as much about the client as about the server;
// operations per server CPU-second are the figure to compare servers by.
package bench
