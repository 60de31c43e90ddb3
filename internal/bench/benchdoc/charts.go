package benchdoc

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/spacecaptain/spacecaptain/internal/bench"
	"github.com/spacecaptain/spacecaptain/internal/bench/soak"
)

// palette are the lines' colours, distinguishable in print and for most
// colour-blind readers (Okabe and Ito's palette).
var palette = []color.RGBA{
	{0, 114, 178, 255},   // blue
	{213, 94, 0, 255},    // vermillion
	{0, 158, 115, 255},   // bluish green
	{204, 121, 167, 255}, // reddish purple
	{230, 159, 0, 255},   // orange
	{86, 180, 233, 255},  // sky blue
	{0, 0, 0, 255},       // black
}

// kindColour is the colour of a rotation kind's marker.
func kindColour(kind string) color.RGBA {
	if i := slices.Index(soak.Kinds(), kind); i >= 0 {
		return palette[(i+3)%len(palette)]
	}
	return palette[6]
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	p.X.Tick.Marker, p.Y.Tick.Marker = plainTicks{}, plainTicks{}
	p.Legend.Top = true
	p.Legend.Left = true
	return p
}

// plainTicks are gonum's default ticks labelled without trailing zeros,
// thousands separated: "2,500" rather than "2500.00".
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i, t := range ticks {
		if t.Label == "" {
			continue
		}
		switch v := t.Value; {
		case math.Abs(v) >= 1000 && v == math.Trunc(v):
			ticks[i].Label = thousands(int(v))
		default:
			ticks[i].Label = strconv.FormatFloat(v, 'f', -1, 64)
		}
	}
	return ticks
}

// addLine draws xys on p in colour i of the palette, dashed if asked, and
// names it in the legend.
func addLine(p *plot.Plot, name string, i int, dashed bool, xys plotter.XYs) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("drawing %s: %w", name, err)
	}
	l.LineStyle.Color = palette[i%len(palette)]
	l.LineStyle.Width = vg.Points(1.2)
	if dashed {
		l.LineStyle.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	}
	p.Add(l)
	if name != "" {
		p.Legend.Add(name, l)
	}
	return nil
}

// addPoints draws xys as a line with a marker at each point.
func addPoints(p *plot.Plot, name string, i int, xys plotter.XYs) error {
	l, s, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("drawing %s: %w", name, err)
	}
	c := palette[i%len(palette)]
	l.LineStyle.Color, l.LineStyle.Width = c, vg.Points(1.2)
	s.GlyphStyle.Color, s.GlyphStyle.Radius = c, vg.Points(2.5)
	s.GlyphStyle.Shape = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.BoxGlyph{}, draw.TriangleGlyph{}, draw.CrossGlyph{}}[i%4]
	p.Add(l, s)
	p.Legend.Add(name, l, s)
	return nil
}

// writeTiles draws plots one above the other into an SVG of the given
// size, their X axes aligned.
func writeTiles(w io.Writer, width, height vg.Length, rows, cols int, plots [][]*plot.Plot) error {
	c := vgsvg.New(width, height)
	dc := draw.New(c)
	t := draw.Tiles{Rows: rows, Cols: cols, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6),
		PadRight: vg.Points(10), PadX: vg.Points(18), PadY: vg.Points(14)}
	canvases := plot.Align(plots, t, dc)
	for j := range plots {
		for i := range plots[j] {
			if plots[j][i] != nil {
				plots[j][i].Draw(canvases[j][i])
			}
		}
	}
	_, err := c.WriteTo(w)
	return err
}

// markRotations draws a vertical line at each rotation, coloured by its
// kind, from 0 to top; with legend, each kind is named once in p's legend.
func markRotations(p *plot.Plot, rots []soak.Rotation, top float64, legend bool) error {
	seen := map[string]bool{}
	for _, r := range rots {
		l, err := plotter.NewLine(plotter.XYs{{X: r.T / 60, Y: 0}, {X: r.T / 60, Y: top}})
		if err != nil {
			return err
		}
		l.LineStyle.Color = kindColour(r.Kind)
		l.LineStyle.Width = vg.Points(0.6)
		l.LineStyle.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		if r.Err != "" {
			l.LineStyle.Color = color.RGBA{200, 0, 0, 255}
			l.LineStyle.Width = vg.Points(1.5)
		}
		p.Add(l)
		name := "rotation: " + r.Kind
		if r.Err != "" {
			name = "rotation FAILED"
		}
		if legend && !seen[name] {
			seen[name] = true
			p.Legend.Add(name, l)
		}
	}
	return nil
}

// ceiling returns a round top for a Y axis above every value.
func ceiling(vals ...float64) float64 {
	m := 0.0
	for _, v := range vals {
		m = max(m, v)
	}
	if m <= 0 {
		return 1
	}
	step := math.Pow(10, math.Floor(math.Log10(m)))
	for _, f := range []float64{1, 2, 2.5, 5, 10} {
		if top := f * step; top >= m*1.08 {
			return top
		}
	}
	return 10 * step
}

// SoakChart draws a soak run: the server's memory, the heartbeat ECHOs'
// latency (with the criterion's limit) and its goroutines and open
// descriptors over time, every rotation marked.
func SoakChart(w io.Writer, sum *soak.Summary, samples []soak.Sample, limitMs float64) error {
	if len(samples) == 0 {
		return fmt.Errorf("no samples to draw")
	}
	var rss, heap, p50, p99, gor, fds plotter.XYs
	var topMem, topLat, topCount float64
	for _, s := range samples {
		x := s.T / 60
		rss = append(rss, plotter.XY{X: x, Y: float64(s.RSS) / (1 << 20)})
		heap = append(heap, plotter.XY{X: x, Y: float64(s.HeapInuse) / (1 << 20)})
		gor = append(gor, plotter.XY{X: x, Y: float64(s.Goroutines)})
		fds = append(fds, plotter.XY{X: x, Y: float64(s.FDs)})
		topMem = max(topMem, float64(s.RSS)/(1<<20))
		topCount = max(topCount, float64(s.Goroutines), float64(s.FDs))
		if s.HBCount > 0 {
			p50 = append(p50, plotter.XY{X: x, Y: s.HBP50})
			p99 = append(p99, plotter.XY{X: x, Y: s.HBP99})
			topLat = max(topLat, s.HBP99)
		}
	}
	// Headroom above the data for the legends, top left.
	topMem, topCount = ceiling(1.8*topMem), ceiling(1.4*topCount)
	topLat = ceiling(1.3*topLat, 1.3*limitMs)
	title := fmt.Sprintf("Soak, %s engine: %s held connections, a rotation every %s", sum.Engine, thousands(sum.Conns), sum.RotateEvery)

	mem := newPlot(title, "", "MiB")
	if err := addLine(mem, "server RSS", 0, false, rss); err != nil {
		return err
	}
	if err := addLine(mem, "heap in use", 1, false, heap); err != nil {
		return err
	}
	lat := newPlot("", "", "heartbeat ECHO, ms")
	if len(p99) > 0 {
		if err := addLine(lat, "p50", 2, false, p50); err != nil {
			return err
		}
		if err := addLine(lat, "p99", 0, false, p99); err != nil {
			return err
		}
		if err := addLine(lat, "p99 limit", 1, true, plotter.XYs{{X: samples[0].T / 60, Y: limitMs}, {X: samples[len(samples)-1].T / 60, Y: limitMs}}); err != nil {
			return err
		}
	}
	// The max, often far above p99 (a GC pause, the machine's other
	// work), is in the CSV; drawn, it would flatten the rest.
	counts := newPlot("", "minutes", "count")
	if err := addLine(counts, "server goroutines", 3, false, gor); err != nil {
		return err
	}
	if err := addLine(counts, "server open descriptors", 2, false, fds); err != nil {
		return err
	}
	for i, pt := range []struct {
		p   *plot.Plot
		top float64
	}{{mem, topMem}, {lat, topLat}, {counts, topCount}} {
		if err := markRotations(pt.p, sum.Rotations, pt.top, i == 0); err != nil {
			return err
		}
		pt.p.Y.Min, pt.p.Y.Max = 0, pt.top
		pt.p.X.Min, pt.p.X.Max = 0, samples[len(samples)-1].T/60
	}
	return writeTiles(w, 9*vg.Inch, 9*vg.Inch, 3, 1, [][]*plot.Plot{{mem}, {lat}, {counts}})
}

// ScalingSeries is one server's scaling run.
type ScalingSeries struct {
	// Name is the server, as the legend says it ("sc-server/epoll").
	Name   string
	Report *bench.Report
}

// ScalingChart draws the scaling runs of several servers: RSS per
// connection, server CPU per second, handshake p99 while opening and ECHO
// p99 at steady state, against the number of connections.
func ScalingChart(w io.Writer, series []ScalingSeries) error {
	if len(series) == 0 {
		return fmt.Errorf("no scaling run to draw")
	}
	rss := newPlot("Server RSS per connection", "connections", "KiB")
	cpu := newPlot("Server CPU per second (1 = one core)", "connections", "CPU-s/s")
	hs := newPlot("Handshake p99 while opening", "connections", "ms")
	echo := newPlot("ECHO p99 at steady state", "connections", "ms")
	tops := make([]float64, 4)
	for i, s := range series {
		if len(s.Report.Points) == 0 {
			return fmt.Errorf("%s: the report has no scaling points: not a run of sc-client bench scale", s.Name)
		}
		var r, c, h, e plotter.XYs
		for _, p := range s.Report.Points {
			x := float64(p.Conns)
			if p.Server != nil {
				r = append(r, plotter.XY{X: x, Y: p.Server.RSSPerConn / 1024})
				c = append(c, plotter.XY{X: x, Y: p.Server.CPUPerSecond})
				tops[0], tops[1] = max(tops[0], p.Server.RSSPerConn/1024), max(tops[1], p.Server.CPUPerSecond)
			}
			h = append(h, plotter.XY{X: x, Y: p.Handshake.P99 / 1000})
			e = append(e, plotter.XY{X: x, Y: p.Echo.P99 / 1000})
			tops[2], tops[3] = max(tops[2], p.Handshake.P99/1000), max(tops[3], p.Echo.P99/1000)
		}
		for _, pl := range []struct {
			p   *plot.Plot
			xys plotter.XYs
		}{{rss, r}, {cpu, c}, {hs, h}, {echo, e}} {
			if len(pl.xys) == 0 {
				continue
			}
			if err := addPoints(pl.p, s.Name, i, pl.xys); err != nil {
				return err
			}
		}
	}
	for i, p := range []*plot.Plot{rss, cpu, hs, echo} {
		p.Y.Min, p.Y.Max = 0, ceiling(tops[i])
		p.X.Min = 0
	}
	return writeTiles(w, 10*vg.Inch, 7.5*vg.Inch, 2, 2, [][]*plot.Plot{{rss, cpu}, {hs, echo}})
}

// HandshakeRate is one server's median rate of one handshake scenario.
type HandshakeRate struct {
	// Case names the scenario in a few words ("P-256, hybrid group").
	Case string `json:"case"`
	// Server is the server ("sc-server/epoll", "refserver").
	Server string `json:"server"`
	// PerCPUSecond is handshakes per second of the server's CPU time,
	// PerSecond per second of wall time.
	PerCPUSecond float64 `json:"per_cpu_s"`
	PerSecond    float64 `json:"per_s"`
}

// HandshakeChart draws handshakes per server CPU-second, grouped by case
// (key type, group, resumption), one bar per server.
func HandshakeChart(w io.Writer, rates []HandshakeRate) error {
	var cases, servers []string
	for _, r := range rates {
		if !slices.Contains(cases, r.Case) {
			cases = append(cases, r.Case)
		}
		if !slices.Contains(servers, r.Server) {
			servers = append(servers, r.Server)
		}
	}
	if len(cases) == 0 {
		return fmt.Errorf("no handshake rates to draw")
	}
	p := newPlot("TLS 1.3 handshakes per server CPU-second", "", "handshakes per CPU-second")
	width := vg.Points(60 / float64(len(servers)))
	top := 0.0
	for i, srv := range servers {
		vals := make(plotter.Values, len(cases))
		for j, c := range cases {
			for _, r := range rates {
				if r.Server == srv && r.Case == c {
					vals[j] = r.PerCPUSecond
					top = max(top, r.PerCPUSecond)
				}
			}
		}
		b, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return err
		}
		b.Color = palette[i%len(palette)]
		b.LineStyle.Width = 0
		b.Offset = width * vg.Length(float64(i)-float64(len(servers)-1)/2)
		p.Add(b)
		p.Legend.Add(srv, b)
	}
	p.NominalX(cases...)
	p.X.Min, p.X.Max = -0.6, float64(len(cases))-0.4
	p.Y.Min, p.Y.Max = 0, ceiling(1.5*top)
	return writeTiles(w, 10*vg.Inch, 4.5*vg.Inch, 1, 1, [][]*plot.Plot{{p}})
}

// thousands formats n with thousands separators.
func thousands(n int) string {
	s := fmt.Sprint(n)
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
