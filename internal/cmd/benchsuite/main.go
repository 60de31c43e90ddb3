package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/bench"
	"github.com/spacecaptain/spacecaptain/internal/bench/benchdoc"
	"github.com/spacecaptain/spacecaptain/internal/childproc"
	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/cli/benchcmd"
	"github.com/spf13/cobra"
)

// config is what scripts/bench.sh tells the suite.
type config struct {
	binDir    string   // sc-server, sc-client, refserver
	benchCmd  []string // the load generator's command, before the mode
	certDirs  map[certKind]string
	pins      map[certKind]string
	engines   []string
	runs      int
	duration  time.Duration
	resultDir string
	out       string // the markdown to write; empty for none
	goBench   string // file with `go test -bench` output
	smoke     bool
	scaling   string // the scaling run's points; empty: the matrix
	tokenDir  string // the token run's layout (server.uri); empty: the matrix
	note      string // said with the token run's results
	only      *regexp.Regexp
	revision  string
	goVersion string
	// identity and allow are the bench identity's key and the allow list
	// naming it (makeIdentity), made when a mutual TLS scenario runs.
	identity, allow string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "bench" {
		// The same bench command sc-client mounts, for a tree whose
		// sc-client does not have it yet: scripts/bench.sh falls back to
		// "benchsuite bench" then, and says so.
		os.Exit(benchMain())
	}
	var c config
	var benchCmd, engines, p256, rsa, ed25519, only string
	flag.StringVar(&c.binDir, "bin", "", "`DIR` holding sc-server, sc-client and refserver")
	flag.StringVar(&benchCmd, "bench-cmd", "", "the load generator's `COMMAND`, words separated by spaces (default: DIR/sc-client bench)")
	flag.StringVar(&p256, "certs-p256", "", "sc-cert init `DIR` with a P-256 server key")
	flag.StringVar(&rsa, "certs-rsa4096", "", "sc-cert init `DIR` with an RSA-4096 server key (full runs)")
	flag.StringVar(&ed25519, "certs-ed25519", "", "sc-cert init `DIR` with an Ed25519 server key (full runs)")
	flag.StringVar(&engines, "engines", "goroutine", "sc-server engines to measure, comma-separated")
	flag.IntVar(&c.runs, "runs", 3, "runs of each scenario on each server; the medians are reported")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "length of each timed run")
	flag.StringVar(&c.resultDir, "results", "", "`DIR` for every run's JSON report, command line and server log")
	flag.StringVar(&c.out, "out", "", "markdown `FILE` to write (docs/BENCHMARKS.md)")
	flag.StringVar(&c.goBench, "go-bench", "", "`FILE` with the output of go test -bench, included verbatim")
	flag.BoolVar(&c.smoke, "smoke", false, "run each mode once with tiny counts and check the reports")
	flag.StringVar(&c.scaling, "scaling", "", "run only the scaling run, at these connection `COUNTS` (comma-separated), each measured for -duration, once per server")
	flag.StringVar(&c.tokenDir, "token", "", "run only the token run: the P-256 layout's key from its file and from the token `DIR`/server.uri names")
	flag.StringVar(&c.note, "note", "", "a `NOTE` printed with the token run's results (say, \"taken on a loaded machine\")")
	flag.StringVar(&only, "only", "", "run only the scenarios whose ID matches this `REGEXP`")
	flag.StringVar(&c.revision, "revision", "", "the git revision measured, for the document")
	flag.StringVar(&c.goVersion, "go-version", "", "the output of go version, for the document")
	flag.Parse()

	c.engines = strings.Split(engines, ",")
	c.benchCmd = strings.Fields(benchCmd)
	if len(c.benchCmd) == 0 {
		c.benchCmd = []string{filepath.Join(c.binDir, "sc-client"), "bench"}
	}
	c.certDirs = map[certKind]string{certP256: p256, certRSA4096: rsa, certEd25519: ed25519}
	if only != "" {
		c.only = regexp.MustCompile(only)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &c); err != nil {
		fmt.Fprintf(os.Stderr, "benchsuite: error: %v\n", err)
		os.Exit(1)
	}
}

func benchMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{Use: "sc-client"}
	cli.SetupRoot(root)
	root.AddCommand(benchcmd.NewCmd())
	return cli.Main(ctx, root)
}

// server is one server the matrix runs against.
type server struct {
	Name   string // "sc-server/epoll", "refserver"
	engine string // empty for refserver
	key    string // the key sc-server serves; empty: the layout's server.key
}

func (c *config) servers(sc scenario) []server {
	if c.tokenDir != "" {
		return c.tokenServers()
	}
	var list []server
	for _, e := range c.engines {
		list = append(list, server{Name: "sc-server/" + e, engine: e})
	}
	if sc.Ref {
		list = append(list, server{Name: "refserver"})
	}
	return list
}

// result is one run.
type result struct {
	Scenario string
	Server   string
	Run      int
	Report   *bench.Report
	Err      string // why the run gave no report, or what failed
}

// commands records the command lines of a scenario, for the document.
type commands struct {
	server map[string]string // by server name
	bench  string
}

func run(ctx context.Context, c *config) error {
	scenarios := fullScenarios(c.duration)
	switch {
	case c.smoke:
		scenarios = smokeScenarios()
	case c.scaling != "":
		scenarios = []scenario{scalingScenario(c.scaling, c.duration)}
	case c.tokenDir != "":
		scenarios = []scenario{tokenScenario(c.duration)}
	}
	var picked []scenario
	for _, sc := range scenarios {
		if c.only != nil && !c.only.MatchString(sc.ID) {
			continue
		}
		if sc.Cert != certNone && c.certDirs[sc.Cert] == "" {
			fmt.Fprintf(os.Stderr, "benchsuite: skipping %s: no %s certificate directory\n", sc.ID, sc.Cert)
			continue
		}
		picked = append(picked, sc)
	}
	c.pins = map[certKind]string{}
	for kind, dir := range c.certDirs {
		if dir == "" {
			continue
		}
		pin, err := readPin(filepath.Join(dir, "server.pin"))
		if err != nil {
			return err
		}
		c.pins[kind] = pin
	}
	if err := os.MkdirAll(c.resultDir, 0o755); err != nil {
		return err
	}
	if slices.ContainsFunc(picked, func(sc scenario) bool { return sc.MTLS }) {
		var err error
		if c.identity, c.allow, err = makeIdentity(c.resultDir); err != nil {
			return fmt.Errorf("making the bench identity: %w", err)
		}
	}
	total := 0
	for _, sc := range picked {
		total += c.runsOf(sc) * len(c.servers(sc))
	}
	began := time.Now()
	load0 := loadAvg()
	var results []result
	cmds := map[string]*commands{}
	n := 0
	for _, sc := range picked {
		cmds[sc.ID] = &commands{server: map[string]string{}}
		// Runs interleave the servers, so that each comparison's runs
		// are close together in time on a machine whose load drifts.
		for r := 1; r <= c.runsOf(sc); r++ {
			for _, srv := range c.servers(sc) {
				n++
				res := c.runOne(ctx, sc, srv, r, cmds[sc.ID])
				if ctx.Err() != nil {
					return ctx.Err()
				}
				results = append(results, res)
				fmt.Fprintf(os.Stderr, "[%d/%d %s] %s on %s, run %d: %s\n", n, total, time.Since(began).Round(time.Second), sc.ID, srv.Name, r, summary(res))
			}
		}
	}
	load1 := loadAvg()
	if err := writeScaling(c.resultDir, results); err != nil {
		return err
	}
	if c.smoke {
		return checkSmoke(results)
	}
	if c.scaling != "" {
		return checkScaling(results)
	}
	if c.tokenDir != "" {
		if len(picked) != 1 {
			return errors.New("the token run has one scenario: -only left none")
		}
		return writeToken(c, picked[0], results, load0, load1, time.Since(began))
	}
	if err := writeHandshakeRates(c, picked, results); err != nil {
		return err
	}
	if c.out == "" {
		return nil
	}
	doc := document{
		config: c, scenarios: picked, results: results, commands: cmds,
		began: began, took: time.Since(began), loadBefore: load0, loadAfter: load1,
	}
	var buf bytes.Buffer
	doc.write(&buf)
	out := buf.Bytes()
	// The sections other scripts own (the soak's, the scaling run's, the
	// handshake chart's) stay.
	if prev, err := os.ReadFile(c.out); err == nil {
		if out, err = benchdoc.KeepBlocks(prev, out); err != nil {
			return fmt.Errorf("keeping the sections of %s that other scripts wrote: %w", c.out, err)
		}
	}
	return os.WriteFile(c.out, out, 0o644)
}

// writeScaling writes each server's scaling report as
// DIR/scaling-SERVER.json, which benchdoc scaling draws.
func writeScaling(dir string, results []result) error {
	for _, res := range results {
		if res.Report == nil || res.Report.Mode != bench.ModeScale {
			continue
		}
		data, err := json.MarshalIndent(res.Report, "", "  ")
		if err != nil {
			return err
		}
		name := "scaling-" + strings.ReplaceAll(res.Server, "/", "-") + ".json"
		if err := os.WriteFile(filepath.Join(dir, name), append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// checkScaling fails unless every server's scaling run gave a report
// whose every point held its connections without errors.
func checkScaling(results []result) error {
	var bad []string
	for _, res := range results {
		switch {
		case res.Report == nil:
			bad = append(bad, fmt.Sprintf("%s: %s", res.Server, res.Err))
		case res.Report.Errors > 0:
			bad = append(bad, fmt.Sprintf("%s: %d errors %q", res.Server, res.Report.Errors, res.Report.ErrorSamples))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("scaling run failed:\n  %s", strings.Join(bad, "\n  "))
	}
	return nil
}

// handshakeCases are the handshake scenarios of the chart, by the words
// its axis gives them.
var handshakeCases = []struct{ id, label string }{
	{hsP256, "P-256, hybrid group"},
	{hsP256X25519, "P-256, X25519"},
	{hsEd25519, "Ed25519, hybrid"},
	{hsRSA, "RSA-4096, hybrid"},
	{hsP256Resume, "P-256, resumed"},
	{hsRSAResume, "RSA-4096, resumed"},
}

// writeHandshakeRates writes the medians of the TLS 1.3 handshake
// scenarios, per server, as DIR/handshakes.json, which benchdoc
// handshakes draws.
func writeHandshakeRates(c *config, picked []scenario, results []result) error {
	d := &document{config: c, scenarios: picked, results: results}
	var rates []benchdoc.HandshakeRate
	for _, hc := range handshakeCases {
		i := slices.IndexFunc(picked, func(sc scenario) bool { return sc.ID == hc.id })
		if i < 0 {
			continue
		}
		for _, srv := range c.servers(picked[i]) {
			if s, ok := d.stats(hc.id, srv.Name); ok {
				rates = append(rates, benchdoc.HandshakeRate{Case: hc.label, Server: srv.Name, PerCPUSecond: s.perCPU, PerSecond: s.opsPerSec})
			}
		}
	}
	if len(rates) == 0 {
		return nil
	}
	data, err := json.MarshalIndent(rates, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.resultDir, "handshakes.json"), append(data, '\n'), 0o644)
}

// scaleComplete reports whether every point of a scaling report held its
// connections, timed ECHOs and has the server's figures.
func scaleComplete(rep *bench.Report) bool {
	if len(rep.Points) == 0 {
		return false
	}
	for _, p := range rep.Points {
		if p.Held != p.Conns || p.Echo.Count == 0 || p.Handshake.Count == 0 || p.Server == nil || p.Server.RSS <= 0 {
			return false
		}
	}
	return true
}

func (c *config) runsOf(sc scenario) int {
	if c.smoke {
		return 1
	}
	if sc.Runs > 0 {
		return min(sc.Runs, c.runs)
	}
	return c.runs
}

func summary(res result) string {
	if res.Report == nil {
		return "FAILED: " + res.Err
	}
	r := res.Report
	s := fmt.Sprintf("%.0f ops/s", r.OpsPerSecond)
	if r.Server != nil {
		s += fmt.Sprintf(", %.0f per server CPU-second", r.Server.OpsPerCPUSecond)
		if r.Server.RSSPerConn != 0 && r.Mode == bench.ModeIdle {
			s += fmt.Sprintf(", %.1f KiB per connection", r.Server.RSSPerConn/1024)
		}
	}
	if r.Errors > 0 {
		s += fmt.Sprintf(", %d ERRORS (%s)", r.Errors, strings.Join(r.ErrorSamples, "; "))
	}
	return s
}

// checkSmoke fails unless every run gave a well-formed report with
// operations and no errors.
func checkSmoke(results []result) error {
	var bad []string
	for _, res := range results {
		switch {
		case res.Report == nil:
			bad = append(bad, fmt.Sprintf("%s on %s: %s", res.Scenario, res.Server, res.Err))
		case res.Report.Errors > 0 || res.Report.Ops == 0:
			bad = append(bad, fmt.Sprintf("%s on %s: %d ops, %d errors %q", res.Scenario, res.Server, res.Report.Ops, res.Report.Errors, res.Report.ErrorSamples))
		case res.Report.Server == nil || res.Report.Server.CPU < 0 || res.Report.Server.RSSAfter <= 0:
			bad = append(bad, fmt.Sprintf("%s on %s: no server figures from --pid", res.Scenario, res.Server))
		case res.Report.Mode == bench.ModeScale && !scaleComplete(res.Report):
			bad = append(bad, fmt.Sprintf("%s on %s: points %+v, want each held with ECHOs timed and the server's figures", res.Scenario, res.Server, res.Report.Points))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("smoke run failed:\n  %s", strings.Join(bad, "\n  "))
	}
	fmt.Fprintf(os.Stderr, "benchsuite: smoke run ok: %d runs, every report well-formed and error-free\n", len(results))
	return nil
}

// bindTries bounds the runs of one scenario whose server could not bind
// the port freeAddr found free: another program may take it (a UDP port
// above all, which any program's DNS lookup may use) before the server
// starts.
const bindTries = 3

// runOne starts a fresh server, runs the bench command against it with
// --pid, stops the server and returns the report. A server that exits
// because its port was taken in the meantime is started again on another
// port, up to bindTries times.
func (c *config) runOne(ctx context.Context, sc scenario, srv server, run int, cmds *commands) result {
	for try := 1; ; try++ {
		res, portTaken := c.runOnce(ctx, sc, srv, run, cmds)
		if !portTaken || try == bindTries {
			return res
		}
		fmt.Fprintf(os.Stderr, "suite: %s on %s: %s; again on another port\n", sc.ID, srv.Name, res.Err)
	}
}

// runOnce is one try of runOne; portTaken says that the server exited
// because its address was in use.
func (c *config) runOnce(ctx context.Context, sc scenario, srv server, run int, cmds *commands) (res result, portTaken bool) {
	res = result{Scenario: sc.ID, Server: srv.Name, Run: run}
	base := filepath.Join(c.resultDir, fmt.Sprintf("%s__%s__%d", sc.ID, strings.ReplaceAll(srv.Name, "/", "-"), run))
	addr, err := freeAddr(sc.DTLS)
	if err != nil {
		res.Err = err.Error()
		return res, false
	}
	argv := c.serverArgv(sc, srv, addr)
	cmds.server[srv.Name] = strings.Join(argv, " ")
	logFile, err := os.Create(base + ".server.log")
	if err != nil {
		res.Err = err.Error()
		return res, false
	}
	defer logFile.Close()
	proc := exec.Command(argv[0], argv[1:]...)
	proc.Stdout, proc.Stderr = logFile, logFile
	if err := childproc.Start(proc); err != nil {
		res.Err = fmt.Sprintf("starting %s: %v", argv[0], err)
		return res, false
	}
	exited := make(chan error, 1)
	died := make(chan struct{}) // closed when the server exits
	go func() { exited <- proc.Wait(); close(died) }()
	defer stopServer(proc, exited)

	bargs := append([]string{}, c.benchCmd...)
	bargs = append(bargs, sc.Args...)
	if sc.DTLS {
		bargs = append(bargs, "--udp")
	}
	if sc.Cert == certNone {
		bargs = append(bargs, "--plaintext")
	} else {
		bargs = append(bargs, "--pin", c.pins[sc.Cert])
	}
	if sc.MTLS {
		bargs = append(bargs, "--identity", c.identity)
	}
	bargs = append(bargs, "--server", addr, "--wait", "10s", "--json", "--pid", strconv.Itoa(proc.Process.Pid))
	cmds.bench = strings.Join(bargs, " ")
	timeout := sc.Timeout
	if timeout == 0 {
		timeout = c.duration + time.Minute
	}
	bctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A server that exits (its port taken, say) ends the run at once,
	// rather than after the bench's --wait.
	go func() {
		select {
		case <-died:
			cancel()
		case <-bctx.Done():
		}
	}()
	cmd := exec.CommandContext(bctx, bargs[0], bargs[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := childproc.Run(cmd)
	_ = os.WriteFile(base+".json", stdout.Bytes(), 0o644)
	_ = os.WriteFile(base+".cmd", []byte(cmds.server[srv.Name]+"\n"+cmds.bench+"\n"+stderr.String()), 0o644)
	select {
	case err := <-exited:
		exited <- err
		res.Err = fmt.Sprintf("the server exited during the run (%v); see %s.server.log", err, base)
		log, _ := os.ReadFile(base + ".server.log")
		return res, bytes.Contains(log, []byte("address already in use"))
	default:
	}
	var rep bench.Report
	dec := json.NewDecoder(bytes.NewReader(stdout.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		res.Err = fmt.Sprintf("no JSON report (%v): %v: %s", runErr, err, strings.TrimSpace(stderr.String()))
		return res, false
	}
	if dec.More() {
		res.Err = "more than one JSON value on stdout"
		return res, false
	}
	res.Report = &rep
	if runErr != nil && rep.Errors == 0 {
		res.Err = fmt.Sprintf("bench failed (%v) without counting errors: %s", runErr, strings.TrimSpace(stderr.String()))
	}
	return res, false
}

func (c *config) serverArgv(sc scenario, srv server, addr string) []string {
	dir := c.certDirs[sc.Cert]
	if srv.engine == "" {
		argv := []string{filepath.Join(c.binDir, "refserver"), "--listen", addr}
		if sc.Cert == certNone {
			return append(argv, "--plaintext")
		}
		if sc.MTLS {
			argv = append(argv, "--client-allow", c.allow)
		}
		return append(argv, "--cert", filepath.Join(dir, "server.crt"), "--key", filepath.Join(dir, "server.key"))
	}
	argv := []string{filepath.Join(c.binDir, "sc-server"), "--listen", addr, "--engine", srv.engine,
		// Room for the 19,000-connection scenario within the 20,000
		// file descriptors a process has here.
		"--max-conns", "19900",
		// The load comes from one address, 127.0.0.1, at thousands of
		// handshakes a second: the per-source limits would measure
		// themselves.
		"--source-max-conns", "0", "--source-handshake-rate", "0",
		"--log-level", "warn"}
	if sc.Cert == certNone {
		return append(argv, "--plaintext")
	}
	if sc.DTLS {
		argv = append(argv, dtlsServerArgs...)
	}
	if sc.MTLS {
		argv = append(argv, "--client-auth", "require", "--client-allow", c.allow)
	}
	key := filepath.Join(dir, "server.key")
	if srv.key != "" {
		key = srv.key
	}
	return append(argv, "--cert", filepath.Join(dir, "server.crt"), "--key", key)
}

// stopServer ends a server with SIGTERM (a graceful drain), and SIGKILL if
// it has not exited 15 s later.
func stopServer(proc *exec.Cmd, exited chan error) {
	select {
	case <-exited:
		return
	default:
	}
	_ = proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = proc.Process.Kill()
		<-exited
	}
}

// freeAddr returns a loopback address with a port nobody listens on: on
// TCP, and with udp on UDP too (sc-server --dtls serves both on it). A
// port the system picks for TCP may be taken on UDP: up to 10 are tried.
func freeAddr(udp bool) (string, error) {
	for range 10 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := ln.Addr().String()
		if !udp {
			ln.Close()
			return addr, nil
		}
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr, nil
		}
	}
	return "", errors.New("no loopback port free on both TCP and UDP in 10 tries")
}

func readPin(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the server's pin (scripts/bench.sh writes it with sc-cert fingerprint): %w", err)
	}
	pin := strings.TrimSpace(string(data))
	if !strings.HasPrefix(pin, "sha256//") {
		return "", errors.New("malformed pin in " + path)
	}
	return pin, nil
}

// loadAvg returns the 1, 5 and 15 minute load averages of /proc/loadavg.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
