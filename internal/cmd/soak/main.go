// Command soak runs a soak of sc-server: a game's load for a long time
// while its certificate rotates (package internal/bench/soak). It writes the
// samples as CSV and the summary as JSON, prints the criteria, and exits 1
// if any failed. scripts/soak.sh builds and runs it:
//
//	soak --bin DIR --dir WORKDIR --engine epoll --minutes 60 --conns 15000 \
//	     --csv soak.csv --json soak.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/bench/soak"
)

func main() {
	var o soak.Options
	var minutes float64
	var csvPath, jsonPath string
	flag.StringVar(&o.Bin, "bin", "", "`DIR` holding the sc-server and sc-cert binaries")
	flag.StringVar(&o.Dir, "dir", "", "new, empty working `DIR`: certificates, known-hosts files, the server's log")
	flag.StringVar(&o.Engine, "engine", "epoll", "sc-server's connection `ENGINE`")
	flag.Float64Var(&minutes, "minutes", soak.DefaultDuration.Minutes(), "length of the run in `MINUTES`")
	flag.IntVar(&o.Conns, "conns", soak.DefaultConns, "held connections, each sending a heartbeat ECHO")
	flag.IntVar(&o.PingPong, "ping-pong", soak.DefaultPingPong, "ping-pong connections")
	flag.Float64Var(&o.PingPongRate, "ping-pong-rate", soak.DefaultPingPongRate, "ECHOs a second on each ping-pong connection")
	flag.Float64Var(&o.NewRate, "new-rate", soak.DefaultNewRate, "new connections a second, each doing one ECHO")
	flag.DurationVar(&o.Heartbeat, "heartbeat", soak.DefaultHeartbeat, "heartbeat period of each held connection")
	flag.DurationVar(&o.Sample, "sample", soak.DefaultSample, "sampling period, and the latency criterion's window")
	flag.DurationVar(&o.RotateEvery, "rotate-every", soak.DefaultRotateEvery, "period of the certificate rotations")
	flag.IntVar(&o.Players, "players", soak.DefaultPlayers, "players trusting on first use, each with a known-hosts file")
	flag.IntVar(&o.CAEvery, "ca-every", soak.DefaultCAEvery, "every Nth connection trusts the local CA instead")
	flag.DurationVar(&o.SteadyAt, "steady-at", 0, "start of the steady state (default: 5m in a run of 10 minutes or more, else 30s)")
	flag.IntVar(&o.SteadyGCCycles, "steady-gc-cycles", soak.DefaultSteadyGCCycles, "the RSS criterion counts from the first sample after -steady-at by which the server has collected garbage this many times under the full load (negative: from -steady-at)")
	flag.StringVar(&o.Note, "note", "", "a `NOTE` kept with the results (say, that the machine was busy)")
	flag.StringVar(&csvPath, "csv", "", "write the samples to this CSV `FILE`")
	flag.StringVar(&jsonPath, "json", "", "write the summary to this JSON `FILE`")
	flag.Parse()
	o.Duration = time.Duration(minutes * float64(time.Minute))
	o.Log = os.Stderr
	os.Exit(run(o, csvPath, jsonPath))
}

func run(o soak.Options, csvPath, jsonPath string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if csvPath != "" {
		f, err := os.Create(csvPath)
		if err != nil {
			fmt.Fprintf(os.Stderr, "soak: error: %v\n", err)
			return 1
		}
		defer f.Close()
		o.CSV = f
	}
	sum, err := soak.Run(ctx, o)
	if sum != nil && jsonPath != "" {
		data, _ := json.MarshalIndent(sum, "", "  ")
		if werr := os.WriteFile(jsonPath, append(data, '\n'), 0o644); werr != nil {
			fmt.Fprintf(os.Stderr, "soak: error: %v\n", werr)
			return 1
		}
	}
	if sum != nil {
		for _, c := range sum.Checks {
			mark := "ok  "
			if !c.Pass {
				mark = "FAIL"
			}
			fmt.Fprintf(os.Stderr, "soak: %s %s: %s (limit: %s)\n", mark, c.Name, c.Measured, c.Limit)
		}
		for _, e := range sum.ErrorSamples {
			fmt.Fprintf(os.Stderr, "soak: error seen: %s\n", e)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: error: %v\n", err)
		return 1
	}
	if !sum.Pass {
		fmt.Fprintf(os.Stderr, "soak: FAILED: %d of %d criteria not met (%s engine)\n", len(sum.Failures()), len(sum.Checks), o.Engine)
		return 1
	}
	fmt.Fprintf(os.Stderr, "soak: passed: every criterion met (%s engine, %.0f minutes, %d connections, %d rotations)\n",
		o.Engine, sum.Minutes, sum.Conns, len(sum.Rotations))
	return 0
}
