package interop

import (
	"bufio"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spacecaptain/spacecaptain/internal/childproc"
	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pki"
)

// Helpers of the rotation, renewal, ticket-key and metrics tests.

var (
	toolOnce sync.Once
	toolErr  error
)

// rotloadBin builds testdata/rotload (once per run, without the race
// detector whatever the test binary has) and returns its path.
func rotloadBin(t *testing.T) string {
	t.Helper()
	out := filepath.Join(binDir, "rotload"+exe())
	toolOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", out, module+"internal/interop/testdata/rotload")
		cmd.Env = os.Environ()
		if os.Getenv("GOTOOLCHAIN") == "" {
			cmd.Env = append(cmd.Env, "GOTOOLCHAIN=auto")
		}
		if b, err := childproc.CombinedOutput(cmd); err != nil {
			toolErr = fmt.Errorf("building rotload: %v\n%s", err, b)
		}
	})
	if toolErr != nil {
		t.Fatal(toolErr)
	}
	return out
}

// loadEvent is one line of rotload's output.
type loadEvent struct {
	Ev     string `json:"ev"`
	Serial string `json:"serial"`
	Pin    string `json:"pin"`
	At     int64  `json:"at"`
	Client int    `json:"client"`
	Next   string `json:"next"`
	What   string `json:"what"`
	Who    string `json:"who"`
	Err    string `json:"err"`

	// summary
	Seconds          float64 `json:"seconds"`
	Handshakes       int64   `json:"handshakes"`
	CA               int64   `json:"ca"`
	TOFU             int64   `json:"tofu"`
	TLS12            int64   `json:"tls12"`
	TLS13            int64   `json:"tls13"`
	Echoes           int64   `json:"echoes"`
	Long             int64   `json:"long"`
	LongAlive        int64   `json:"long_alive"`
	Failures         int64   `json:"failures"`
	BadAnnouncements int64   `json:"bad_announcements"`
}

// load is a running rotload and what it has reported.
type load struct {
	t     *testing.T
	stdin io.WriteCloser
	done  chan struct{} // closed when its output has ended

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every event
	ready   bool
	seen    map[string]loadEvent // serial → its "new" event
	learned map[int]string       // TOFU client → the next pin it recorded last
	fails   []string
	stale   []string
	summary *loadEvent
	stderr  strings.Builder
}

// startLoad runs rotload against srv with the CA file and extra flags.
// The test's end stops it.
func startLoad(t *testing.T, srv *scServer, caFile string, args ...string) *load {
	t.Helper()
	cmd := exec.Command(rotloadBin(t), append([]string{"-addr", srv.Addr, "-ca", caFile, "-store-dir", t.TempDir()}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	l := &load{t: t, stdin: stdin, done: make(chan struct{}), changed: make(chan struct{}),
		seen: map[string]loadEvent{}, learned: map[int]string{}}
	cmd.Stderr = &lockedWriter{mu: &l.mu, w: &l.stderr}
	if err := childproc.Start(cmd); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(l.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev loadEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				l.update(func() { l.fails = append(l.fails, "unreadable output: "+sc.Text()) })
				continue
			}
			l.update(func() {
				switch ev.Ev {
				case "ready":
					l.ready = true
				case "new":
					l.seen[ev.Serial] = ev
				case "learned":
					l.learned[ev.Client] = ev.Next
				case "fail":
					l.fails = append(l.fails, sc.Text())
				case "stale":
					l.stale = append(l.stale, ev.Serial)
				case "summary":
					l.summary = &ev
				}
			})
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-l.done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-l.done
		}
	})
	return l
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func (l *load) update(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f()
	close(l.changed)
	l.changed = make(chan struct{})
}

// wait blocks until cond (called with the lock held) holds, and reports
// false if it did not within timeout or the load generator ended.
func (l *load) wait(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		ok, ch := cond(), l.changed
		l.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-l.done:
			l.mu.Lock()
			ok := cond()
			l.mu.Unlock()
			return ok
		case <-deadline.C:
			return false
		}
	}
}

// stop closes rotload's input and returns its summary.
func (l *load) stop() loadEvent {
	l.t.Helper()
	l.stdin.Close()
	select {
	case <-l.done:
	case <-time.After(60 * time.Second):
		l.t.Fatal("rotload did not stop within 60s of its input closing")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.summary == nil {
		l.t.Fatalf("rotload ended without a summary:\n%s", l.stderr.String())
	}
	return *l.summary
}

// servedCert dials srv trusting caFile and returns the leaf it presents.
func servedCert(t *testing.T, srv *scServer, caFile string) *x509.Certificate {
	t.Helper()
	ca, err := pki.ReadCertificateFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	c, err := client.Dial(context.Background(), srv.Addr, client.Options{TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatalf("dialing %s: %v\n%s", srv.Addr, err, srv.Log())
	}
	defer c.Close()
	if _, err := c.Do(context.Background(), proto.Echo, []byte("x")); err != nil {
		t.Fatalf("ECHO on %s: %v", srv.Addr, err)
	}
	cs, _ := c.ConnectionState()
	return cs.PeerCertificates[0]
}

// waitServed dials srv until it presents the certificate with serial, or
// fails the test after timeout. Polled: the server reloads after its
// debounce, and the test is about how soon.
func waitServed(t *testing.T, srv *scServer, caFile, serial string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		leaf := servedCert(t, srv, caFile)
		if pki.SerialHex(leaf.SerialNumber) == serial {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serial %s not served within %v (still %s):\n%s", serial, timeout, pki.SerialHex(leaf.SerialNumber), srv.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits until srv has logged more than n records matching all of
// parts, and returns how many there are. Polled with a deadline: the
// server logs from its own goroutines.
func waitLog(t *testing.T, srv *scServer, n int, timeout time.Duration, parts ...string) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if got := countLog(srv, parts...); got > n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new log record with %q within %v:\n%s", parts, timeout, srv.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countLog counts srv's log lines that contain every one of parts.
func countLog(srv *scServer, parts ...string) int {
	n := 0
	for _, line := range strings.Split(srv.Log(), "\n") {
		ok := line != ""
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			n++
		}
	}
	return n
}

// issuer signs certificates as the local CA of a layout, for rotations the
// test writes itself.
type issuer struct {
	ca  *x509.Certificate
	key crypto.Signer
}

func mustIssuer(t *testing.T, dir string) *issuer {
	t.Helper()
	ca, err := pki.ReadCertificateFile(filepath.Join(dir, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	k, err := pki.ReadKeyFile(filepath.Join(dir, pki.CAKeyFile), pki.KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &issuer{ca: ca, key: k.Signer}
}

// issue returns a new certificate for pub, like the one in certFile
// (subject and names), as PEM; see issueLike.
func (is *issuer) issue(t *testing.T, certFile string, pub crypto.PublicKey, notBefore, notAfter time.Time) ([]byte, *x509.Certificate) {
	t.Helper()
	cur, err := pki.ReadCertificateFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	return is.issueLike(t, cur, pub, notBefore, notAfter)
}

// issueLike returns a new certificate for pub with tmpl's subject and
// names, as PEM. A zero notAfter means a day from now.
func (is *issuer) issueLike(t *testing.T, tmpl *x509.Certificate, pub crypto.PublicKey, notBefore, notAfter time.Time) ([]byte, *x509.Certificate) {
	t.Helper()
	opts := pki.CertOptions{RawSubject: tmpl.RawSubject, DNSNames: tmpl.DNSNames, IPAddresses: tmpl.IPAddresses,
		Issuer: is.ca, IssuerKey: is.key, NotBefore: notBefore, NotAfter: notAfter}
	if notAfter.IsZero() {
		opts.Validity = 24 * time.Hour
	}
	c, err := pki.CreateCertificate(pub, opts)
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCertificatesPEM(c), c
}

// publicKeyOf reads a key file and returns its public half.
func publicKeyOf(t *testing.T, path string) crypto.PublicKey {
	t.Helper()
	k, err := pki.ReadKeyFile(path, pki.KeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return k.Signer.Public()
}

// metricSet is a scrape of /metrics: `name{k=v,…}` (labels sorted and
// unquoted; no braces without labels) → value, histograms as name_count.
type metricSet map[string]float64

func scrapeMetrics(t *testing.T, addr string) metricSet {
	t.Helper()
	status, body := httpGet(t, "http://"+addr+"/metrics")
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

// sum adds the series of family name whose labels include every k=v of
// match (e.g. "result=ok").
func (m metricSet) sum(name string, match ...string) float64 {
	total := 0.0
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, kv := range match {
			ok = ok && (strings.Contains(k, "{"+kv+",") || strings.Contains(k, ","+kv+",") ||
				strings.Contains(k, "{"+kv+"}") || strings.Contains(k, ","+kv+"}"))
		}
		if ok {
			total += v
		}
	}
	return total
}

// series returns the series of family name, for messages.
func (m metricSet) series(name string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == name || strings.HasPrefix(k, name+"{") {
			out = append(out, fmt.Sprintf("%s %v", k, m[k]))
		}
	}
	return strings.Join(out, "\n")
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}
