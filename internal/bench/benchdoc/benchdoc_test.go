package benchdoc

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/bench"
	"github.com/spacecaptain/spacecaptain/internal/bench/soak"
)

const doc = `# Benchmarks

Intro.

## Results

| a | b |

## Commands

commands
`

func TestSetBlock(t *testing.T) {
	b := Block{Name: "soak", Writer: "scripts/soak.sh --record", Body: "## Soak\n\nfirst\n"}
	once, err := SetBlock([]byte(doc), b)
	if err != nil {
		t.Fatal(err)
	}
	want := "| a | b |\n\n<!-- BEGIN soak: written by scripts/soak.sh --record -->\n## Soak\n\nfirst\n<!-- END soak -->\n\n## Commands\n"
	if !strings.Contains(string(once), want) {
		t.Errorf("a new block goes before the Commands section:\n%s", once)
	}
	b.Body = "## Soak\n\nsecond\n"
	twice, err := SetBlock(once, b)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Replace(string(once), "first", "second", 1); string(twice) != got {
		t.Errorf("replacing the block changed more than its body:\n%s", twice)
	}
	other, err := SetBlock(twice, Block{Name: "scaling", Writer: "x", Body: "## Scaling\n"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(other), "second\n<!-- END soak -->\n\n<!-- BEGIN scaling: written by x -->\n## Scaling\n<!-- END scaling -->\n\n## Commands") {
		t.Errorf("a second block goes after the first:\n%s", other)
	}
	// A document with no Commands section gets the block at its end.
	end, err := SetBlock([]byte("# B\n"), b)
	if err != nil || !strings.HasSuffix(string(end), "<!-- END soak -->\n\n") {
		t.Errorf("got %q, %v", end, err)
	}
	// A marker edited away by hand: refuse rather than guess.
	broken := strings.Replace(string(other), "<!-- END soak -->", "", 1)
	if _, err := SetBlock([]byte(broken), b); err == nil {
		t.Error("a block without its END marker was replaced")
	}
}

func TestKeepBlocks(t *testing.T) {
	prev, err := SetBlock([]byte(doc), Block{Name: "soak", Writer: "w", Body: "soak body\n"})
	if err != nil {
		t.Fatal(err)
	}
	prev, _ = SetBlock(prev, Block{Name: "scaling", Writer: "w", Body: "scaling body\n"})
	next := strings.Replace(doc, "| a | b |", "| new | table |", 1)
	got, err := KeepBlocks(prev, []byte(next))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| new | table |", "soak body", "scaling body"} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("the rewritten document lacks %q:\n%s", want, got)
		}
	}
	if i, j := bytes.Index(got, []byte("soak body")), bytes.Index(got, []byte("## Commands")); i > j {
		t.Errorf("the kept blocks are not before Commands:\n%s", got)
	}
	// A block the new document has itself is not doubled.
	again, _ := KeepBlocks(got, got)
	if !bytes.Equal(again, got) {
		t.Errorf("keeping a document's own blocks changed it:\n%s", again)
	}
}

func TestClass(t *testing.T) {
	for _, tt := range []struct {
		k    float64
		want string
	}{{-0.6, "falling"}, {0.1, "flat"}, {0.5, "sublinear"}, {1.02, "linear"}, {1.6, "worse than linear"}} {
		if got := class(tt.k); got != tt.want {
			t.Errorf("class(%v) = %q, want %q", tt.k, got, tt.want)
		}
	}
}

// scaleReport is a scaling run whose CPU grows linearly and whose memory
// per connection is flat.
func scaleReport() *bench.Report {
	rep := &bench.Report{Mode: bench.ModeScale}
	for _, n := range []int{1000, 2000, 5000, 10000} {
		rep.Points = append(rep.Points, bench.ScalePoint{Conns: n, Held: n,
			Handshake: bench.Latency{P99: 40_000}, Echo: bench.Latency{P50: 200, P99: 900 + float64(n)/100},
			Server: &bench.ScaleServer{CPUPerSecond: float64(n) / 50_000, RSSPerConn: 9 * 1024, EchoesPerCPUSecond: 50_000}})
	}
	return rep
}

func TestScalingSection(t *testing.T) {
	series := []ScalingSeries{{Name: "sc-server/epoll", Report: scaleReport()}}
	b := ScalingSection(series, "bench/scaling.svg", "scripts/bench.sh --scaling", "Provisional.")
	for _, want := range []string{
		"| sc-server/epoll | 10,000 | 10,000 | 9.0 KiB | 0.200 | 50,000 | 40 ms | 0.20 ms | 1.0 ms | 0 |",
		"RSS per connection flat (9.0 KiB → 9.0 KiB, k = 0.00)",
		"CPU per second linear (0.020 → 0.200, k = 1.00)",
		"ECHOs per CPU-second flat",
		"**Provisional.**",
		"![Scaling: ", "(bench/scaling.svg)",
	} {
		if !strings.Contains(b.Body, want) {
			t.Errorf("the section lacks %q:\n%s", want, b.Body)
		}
	}
}

// mustSVG checks that data is an SVG document and returns its text.
func mustSVG(t *testing.T, data []byte) string {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	var root string
	var text strings.Builder
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch v := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = v.Name.Local
			}
		case xml.CharData:
			text.Write(v)
		}
	}
	if root != "svg" {
		t.Fatalf("not an SVG document (root %q):\n%.200s", root, data)
	}
	return text.String()
}

func TestCharts(t *testing.T) {
	t.Run("scaling", func(t *testing.T) {
		var buf bytes.Buffer
		err := ScalingChart(&buf, []ScalingSeries{{"sc-server/epoll", scaleReport()}, {"refserver", scaleReport()}})
		if err != nil {
			t.Fatal(err)
		}
		text := mustSVG(t, buf.Bytes())
		for _, want := range []string{"Server RSS per connection", "ECHO p99 at steady state", "sc-server/epoll", "refserver", "connections"} {
			if !strings.Contains(text, want) {
				t.Errorf("the chart lacks %q", want)
			}
		}
		if err := ScalingChart(&buf, []ScalingSeries{{"x", &bench.Report{}}}); err == nil {
			t.Error("a report without points was drawn")
		}
	})
	t.Run("soak", func(t *testing.T) {
		sum := &soak.Summary{Engine: "epoll", Conns: 2000, RotateEvery: "15s",
			Rotations: []soak.Rotation{{T: 15, Kind: soak.RotateKeepKey}, {T: 30, Kind: soak.RotatePromote, KeyChanged: true}}}
		var samples []soak.Sample
		for k := range 13 {
			samples = append(samples, soak.Sample{T: float64(10 * k), RSS: 40 << 20, HeapInuse: 20 << 20, Goroutines: 20, FDs: 2035, HBCount: 2000, HBP50: 0.3, HBP99: 4})
		}
		var buf bytes.Buffer
		if err := SoakChart(&buf, sum, samples, float64(soak.DefaultLatencyLimit/time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		text := mustSVG(t, buf.Bytes())
		for _, want := range []string{"Soak, epoll engine: 2,000 held connections", "rotation: rotate", "rotation: promote-next", "p99 limit", "server open descriptors", "minutes"} {
			if !strings.Contains(text, want) {
				t.Errorf("the chart lacks %q", want)
			}
		}
		if err := SoakChart(&buf, sum, nil, 50); err == nil {
			t.Error("a run without samples was drawn")
		}
	})
	t.Run("handshakes", func(t *testing.T) {
		rates := []HandshakeRate{
			{Case: "P-256, hybrid group", Server: "sc-server/epoll", PerCPUSecond: 1971},
			{Case: "P-256, hybrid group", Server: "refserver", PerCPUSecond: 1933},
			{Case: "RSA-4096, hybrid", Server: "sc-server/epoll", PerCPUSecond: 146},
		}
		var buf bytes.Buffer
		if err := HandshakeChart(&buf, rates); err != nil {
			t.Fatal(err)
		}
		text := mustSVG(t, buf.Bytes())
		for _, want := range []string{"P-256, hybrid group", "RSA-4096, hybrid", "sc-server/epoll", "refserver"} {
			if !strings.Contains(text, want) {
				t.Errorf("the chart lacks %q", want)
			}
		}
		b := HandshakeSection(rates, "bench/handshakes.svg", "a test")
		if !strings.Contains(b.Body, "| RSA-4096, hybrid | 146 | — |") {
			t.Errorf("the section's table:\n%s", b.Body)
		}
	})
}
