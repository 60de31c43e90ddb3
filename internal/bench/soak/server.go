package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
)

// serverProc is the sc-server process of a run.
type serverProc struct {
	cmd         *exec.Cmd
	pid         int
	addr        string // where it serves
	metricsAddr string // where --metrics-listen serves
	pin         string // the key pin it announced at start
	nextPin     string
	exited      chan struct{} // closed once it has exited
	exitErr     error

	logMu    sync.Mutex
	warnings int      // log lines at WARN
	errors   int      // log lines at ERROR
	notable  []string // the first few of them
}

// maxNotable bounds the warning and error lines a summary keeps.
const maxNotable = 10

// logLevels returns the counts of the server's warnings and errors so far,
// and the first few of them.
func (s *serverProc) logLevels() (warnings, errors int, notable []string) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.warnings, s.errors, append([]string(nil), s.notable...)
}

// serveTimeout bounds the wait for the server's "serving" log line.
const serveTimeout = 30 * time.Second

// startServer runs sc-server with args in dir, its log (JSON lines) going
// to logPath, and returns once it serves.
func startServer(bin, dir, logPath string, args []string) (*serverProc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bin, "sc-server"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SC_KEY_PASSWORD=")
	cmd.SysProcAttr = serverAttr()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	cmd.Stdout = logFile
	if err := childproc.Start(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting sc-server: %w", err)
	}
	s := &serverProc{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{})}
	type serving struct {
		Level       string `json:"level"`
		Msg         string `json:"msg"`
		Addr        string `json:"addr"`
		Pin         string `json:"pin"`
		NextPin     string `json:"next_pin"`
		MetricsAddr string `json:"metrics_addr"`
	}
	up := make(chan serving, 1)
	go func() {
		// Read the log to its end, so that the server never blocks on a
		// full pipe.
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			logFile.Write(sc.Bytes())
			logFile.Write([]byte{'\n'})
			var l serving
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			if l.Msg == "serving" {
				select {
				case up <- l:
				default:
				}
			}
			if l.Level == "WARN" || l.Level == "ERROR" {
				s.logMu.Lock()
				if l.Level == "WARN" {
					s.warnings++
				} else {
					s.errors++
				}
				if len(s.notable) < maxNotable {
					s.notable = append(s.notable, sc.Text())
				}
				s.logMu.Unlock()
			}
		}
		_, _ = io.Copy(logFile, pipe)
		s.exitErr = cmd.Wait()
		logFile.Close()
		close(s.exited)
	}()
	select {
	case l := <-up:
		s.addr, s.metricsAddr, s.pin, s.nextPin = l.Addr, l.MetricsAddr, l.Pin, l.NextPin
		if s.metricsAddr == "" {
			s.stop()
			return nil, errors.New("sc-server serves no metrics: it was started without --metrics-listen")
		}
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("sc-server exited before serving (%v): see %s", s.exitErr, logPath)
	case <-time.After(serveTimeout):
		s.stop()
		return nil, fmt.Errorf("sc-server did not serve within %v: see %s", serveTimeout, logPath)
	}
}

// stop ends the server by its PID: SIGTERM (a graceful drain), then
// SIGKILL if it has not exited 30 s later. It returns the exit error of a
// server that did not stop cleanly.
func (s *serverProc) stop() error {
	select {
	case <-s.exited:
		return fmt.Errorf("sc-server had exited by itself: %v", s.exitErr)
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return s.exitErr
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("sc-server did not stop within 30s of SIGTERM and was killed")
	}
}

// running reports whether the server process is still there.
func (s *serverProc) running() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// metrics is one scrape of the server's /metrics.
type metrics map[string]*dto.MetricFamily

var scrapeClient = &http.Client{Timeout: 5 * time.Second}

func (s *serverProc) scrape(ctx context.Context) (metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.metricsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping the server's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping the server's metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing the server's metrics: %w", err)
	}
	return fams, nil
}

// value returns the sum of the samples of the counter or gauge name whose
// label lab is accepted by keep (nil keeps all).
func (m metrics) value(name, lab string, keep func(string) bool) float64 {
	f := m[name]
	if f == nil {
		return 0
	}
	var sum float64
	for _, x := range f.GetMetric() {
		if keep != nil {
			v := ""
			for _, lp := range x.GetLabel() {
				if lp.GetName() == lab {
					v = lp.GetValue()
				}
			}
			if !keep(v) {
				continue
			}
		}
		switch {
		case x.Counter != nil:
			sum += x.GetCounter().GetValue()
		case x.Gauge != nil:
			sum += x.GetGauge().GetValue()
		case x.Untyped != nil:
			sum += x.GetUntyped().GetValue()
		}
	}
	return sum
}

// gc returns the GC summary's cycle count, total pause in seconds and the
// longest recent pause (its quantile 1).
func (m metrics) gc() (cycles int64, total, maxRecent float64) {
	f := m["go_gc_duration_seconds"]
	if f == nil || len(f.GetMetric()) == 0 || f.GetMetric()[0].GetSummary() == nil {
		return 0, 0, 0
	}
	sum := f.GetMetric()[0].GetSummary()
	for _, q := range sum.GetQuantile() {
		if q.GetQuantile() == 1 {
			maxRecent = q.GetValue()
		}
	}
	return int64(sum.GetSampleCount()), sum.GetSampleSum(), maxRecent
}

// The server's failure counts, as the criteria see them.
func (m metrics) failedHandshakes() float64 {
	return m.value("spacecaptain_tls_handshakes_total", "result", func(v string) bool { return v != "ok" })
}

// errorCloses counts connections the server closed for an error or a
// timeout: not a client's EOF, not its own shutdown.
func (m metrics) errorCloses() float64 {
	return m.value("spacecaptain_connections_closed_total", "reason", func(v string) bool {
		return v != "eof" && v != "shutdown"
	})
}

func (m metrics) reloadsFailed() float64 {
	return m.value("spacecaptain_cert_reloads_total", "result", func(v string) bool { return v == "failed" })
}

// relArgs returns args with dir's prefix dropped from paths, for the
// summary.
func relArgs(dir string, args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, dir+string(filepath.Separator), "")
	}
	return out
}
