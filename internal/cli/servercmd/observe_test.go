package servercmd

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pinning"
	"github.com/spacecaptain/spacecaptain/pki"
)

// --metrics-listen: /healthz answers from the start and /readyz says 503
// until the game port serves (asked from inside the MetricsListening hook,
// before the certificates are even loaded), then 200; /metrics counts known
// traffic and follows the certificate through a SIGHUP rotation and a
// refused reload (which keeps the server ready); the listener closes with
// the server.
func TestMetricsListener(t *testing.T) {
	l := mustInit(t)
	type probe struct {
		path   string
		status int
		body   string
	}
	var early []probe
	env := Env{MetricsListening: func(a net.Addr) {
		for _, p := range []string{"/healthz", "/readyz"} {
			status, body := httpGet(t, "http://"+a.String()+p)
			early = append(early, probe{p, status, body})
		}
	}}
	r := startServer(t, env, append(layoutArgs(l), "--metrics-listen", "127.0.0.1:0", "--log-format", "json")...)
	base := "http://" + metricsAddr(t, r)

	// Written by the hook on the server's goroutine before it listened.
	if len(early) != 2 {
		t.Fatalf("the MetricsListening hook probed %d paths, want 2", len(early))
	}
	if early[0].status != http.StatusOK {
		t.Errorf("/healthz during startup: %d %q, want 200", early[0].status, early[0].body)
	}
	if early[1].status != http.StatusServiceUnavailable || !strings.Contains(early[1].body, "listening: not accepting connections") ||
		!strings.Contains(early[1].body, "certificate: no certificate loaded") {
		t.Errorf("/readyz during startup: %d %q, want 503 naming both checks", early[1].status, early[1].body)
	}
	if status, body := httpGet(t, base+"/readyz"); status != http.StatusOK || body != "listening: ok\ncertificate: ok\n" {
		t.Errorf("/readyz while serving: %d %q, want 200 and both checks ok", status, body)
	}

	// Known traffic: 3 ECHOs, a REVERSE and a KEYS on one TLS 1.3
	// connection.
	c := mustDial(t, r.addr, caConfig(t, l, 0))
	for range 3 {
		if _, err := c.Do(context.Background(), proto.Echo, []byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Do(context.Background(), proto.Reverse, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Keys(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Close()

	leaf, _ := pki.ReadCertificateFile(l.ServerCert)
	pin := pinning.PinOf(leaf).String()
	m := scrapeMetrics(t, base)
	m.want(t, "spacecaptain_requests_total{type=echo}", 3)
	m.want(t, "spacecaptain_requests_total{type=reverse}", 1)
	m.want(t, "spacecaptain_requests_total{type=keys}", 1)
	m.want(t, "spacecaptain_request_bytes_total{type=echo}", 3*(proto.HeaderSize+5))
	m.want(t, "spacecaptain_tls_handshakes_total{result=ok,resumed=false,tls_version=1.3}", 1)
	m.want(t, "spacecaptain_connections_accepted_total", 1)
	m.want(t, "spacecaptain_connections_max", 10000)
	m.want(t, "spacecaptain_cert_info{pin="+pin+",serial="+pki.SerialHex(leaf.SerialNumber)+"}", 1)
	m.want(t, "spacecaptain_cert_not_after_timestamp_seconds", float64(leaf.NotAfter.Unix()))
	m.want(t, "spacecaptain_cert_reloads_total{result=changed}", 1) // the initial load
	m.want(t, "spacecaptain_cert_reloads_total{result=failed}", 0)

	// A rotation on the same key, served on SIGHUP: a new serial, the same
	// pin, one more changed reload, and the time of that reload.
	res, err := pki.Rotate(context.Background(), pki.RotateOptions{CertPath: l.ServerCert})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	r.requestReload()
	m = scrapeMetrics(t, base)
	m.want(t, "spacecaptain_cert_info{pin="+pin+",serial="+pki.SerialHex(res.New.SerialNumber)+"}", 1)
	if n := m.count("spacecaptain_cert_info"); n != 1 {
		t.Errorf("spacecaptain_cert_info has %d series after the rotation, want 1 (the old one goes)", n)
	}
	m.want(t, "spacecaptain_cert_not_after_timestamp_seconds", float64(res.New.NotAfter.Unix()))
	if got := m["spacecaptain_cert_reloads_total{result=changed}"]; got < 2 {
		t.Errorf("changed reloads after the rotation: got %v, want at least 2", got)
	}
	if got := m["spacecaptain_cert_last_reload_success_timestamp_seconds"]; got < float64(before.Unix()) || got > float64(time.Now().Unix()+1) {
		t.Errorf("last reload: got %v, want between %d and now", got, before.Unix())
	}

	// A refused reload keeps the server ready and counts as failed.
	if err := os.WriteFile(l.ServerCert, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.requestReload()
	m = scrapeMetrics(t, base)
	if got := m["spacecaptain_cert_reloads_total{result=failed}"]; got < 1 {
		t.Errorf("failed reloads after a broken file: got %v, want at least 1", got)
	}
	m.want(t, "spacecaptain_cert_info{pin="+pin+",serial="+pki.SerialHex(res.New.SerialNumber)+"}", 1)
	if status, body := httpGet(t, base+"/readyz"); status != http.StatusOK {
		t.Errorf("/readyz after a refused reload: %d %q, want 200 (the old certificate still serves)", status, body)
	}

	if code := r.stop(); code != 0 {
		t.Fatalf("exit code %d\n%s", code, r.stderr)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("the metrics listener still answers after the server stopped")
	}
}

// Without --metrics-listen nothing but the game port is bound, and the
// startup record has no metrics_addr.
func TestNoMetricsByDefault(t *testing.T) {
	l := mustInit(t)
	called := false
	r := startServer(t, Env{MetricsListening: func(net.Addr) { called = true }}, append(layoutArgs(l), "--log-format", "json")...)
	if called {
		t.Error("a metrics listener was started without --metrics-listen")
	}
	if rec := logRecord(t, r.stderr.String(), "serving"); rec["metrics_addr"] != nil {
		t.Errorf("serving record has metrics_addr %v without --metrics-listen", rec["metrics_addr"])
	}
}

// Logs: lifecycle at INFO, per-connection events at DEBUG only with
// --log-level debug (with remote_addr and reason), and a reload that kept
// the old certificate at WARN with the error — the records and stable keys
// operators search for.
func TestLogLevels(t *testing.T) {
	for _, level := range []string{"info", "debug"} {
		t.Run(level, func(t *testing.T) {
			l := mustInit(t)
			r := startServer(t, Env{}, append(layoutArgs(l), "--log-format", "json", "--log-level", level)...)
			c := mustDial(t, r.addr, caConfig(t, l, 0))
			if _, err := c.Do(context.Background(), proto.Echo, []byte("x")); err != nil {
				t.Fatal(err)
			}
			c.Close()
			if err := os.WriteFile(l.ServerCert, []byte("-----BEGIN CERTIFICATE-----\ntruncated"), 0o644); err != nil {
				t.Fatal(err)
			}
			r.requestReload()
			if code := r.stop(); code != 0 {
				t.Fatalf("exit code %d", code)
			}
			log := r.stderr.String()
			for _, want := range []struct{ msg, level string }{
				{"serving", "INFO"},
				{"stopped", "INFO"},
				{"reload failed; still serving the previous certificate", "WARN"},
			} {
				rec := logRecord(t, log, want.msg)
				if rec["level"] != want.level {
					t.Errorf("%q logged at %v, want %s", want.msg, rec["level"], want.level)
				}
			}
			if rec := logRecord(t, log, "reload failed; still serving the previous certificate"); !strings.Contains(rec["err"].(string), l.ServerCert) {
				t.Errorf("the refused reload does not name the file: %v", rec["err"])
			}
			closed := findRecord(log, "connection closed")
			if level == "info" {
				if closed != nil {
					t.Errorf("a per-connection record at level info: %v", closed)
				}
				return
			}
			if closed == nil {
				t.Fatalf("no connection record at level debug:\n%s", log)
			}
			// The reason is eof, or shutdown when the stop came first.
			if closed["level"] != "DEBUG" || (closed["reason"] != "eof" && closed["reason"] != "shutdown") ||
				!strings.HasPrefix(closed["remote_addr"].(string), "127.0.0.1:") {
				t.Errorf("connection record: %v, want DEBUG with a reason and remote_addr", closed)
			}
			if done := findRecord(log, "handshake done"); done == nil || done["level"] != "DEBUG" || done["tls_version"] != "TLS 1.3" {
				t.Errorf("handshake record: %v, want DEBUG with tls_version", done)
			}
		})
	}
}

// metricsAddr returns the metrics_addr of the server's JSON "serving"
// record.
func metricsAddr(t *testing.T, r *running) string {
	t.Helper()
	a, _ := logRecord(t, r.stderr.String(), "serving")["metrics_addr"].(string)
	if a == "" {
		t.Fatalf("no metrics_addr in the serving record:\n%s", r.stderr)
	}
	return a
}

// logRecord returns the first JSON log record whose msg is msg, failing
// the test when there is none.
func logRecord(t *testing.T, log, msg string) map[string]any {
	t.Helper()
	rec := findRecord(log, msg)
	if rec == nil {
		t.Fatalf("no %q record in the log:\n%s", msg, log)
	}
	return rec
}

func findRecord(log, msg string) map[string]any {
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			return m
		}
	}
	return nil
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("reading %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// metricSet is a scrape: `name{k=v,…}` (labels sorted, unquoted; no braces
// without labels) → value, with histograms as name_count.
type metricSet map[string]float64

func scrapeMetrics(t *testing.T, base string) metricSet {
	t.Helper()
	status, body := httpGet(t, base+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	out := metricSet{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(l)) {
				parts = append(parts, k+"="+l[k])
			}
			key, v := name, 0.0
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				key, v = name+"_count", float64(m.GetHistogram().GetSampleCount())
			default:
				v = m.GetUntyped().GetValue()
			}
			if len(parts) > 0 {
				key += "{" + strings.Join(parts, ",") + "}"
			}
			out[key] = v
		}
	}
	return out
}

func (m metricSet) want(t *testing.T, key string, v float64) {
	t.Helper()
	got, ok := m[key]
	if !ok {
		t.Errorf("no series %s in the scrape", key)
		return
	}
	if got != v {
		t.Errorf("%s: got %v, want %v", key, got, v)
	}
}

// count returns how many series the family name has.
func (m metricSet) count(name string) int {
	n := 0
	for k := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			n++
		}
	}
	return n
}
