package grafana

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/promcheck"
)

// dashboard is the part of Grafana's dashboard model the test reads.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name string `json:"name"`
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

func mustLoad(t *testing.T) *dashboard {
	t.Helper()
	data, err := os.ReadFile("spacecaptain.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("spacecaptain.json: %v", err)
	}
	return &d
}

// all returns the dashboard's panels, those inside rows included.
func (d *dashboard) all() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// exprs returns every PromQL expression of the dashboard, with where it
// is: the panels' targets, the annotations, and the metric of each
// label_values() variable query.
func (d *dashboard) exprs(t *testing.T) map[string]string {
	out := map[string]string{}
	for _, p := range d.all() {
		for _, tg := range p.Targets {
			out[p.Title+" "+tg.RefID] = tg.Expr
		}
	}
	for _, a := range d.Annotations.List {
		out["annotation "+a.Name] = a.Expr
	}
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		m := labelValues.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(METRIC, LABEL)", v.Name, s)
			continue
		}
		out["variable "+v.Name] = m[1]
	}
	return out
}

// Issue 18: the dashboard is well-formed and covers what an operator
// watches.
func TestDashboardShape(t *testing.T) {
	d := mustLoad(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want both set and a schema of Grafana 9 or later", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["job"] != "query" || vars["instance"] != "query" {
		t.Errorf("template variables %v: want a datasource variable and job and instance queries", vars)
	}
	ids := map[int]string{}
	for _, p := range d.all() {
		if other, ok := ids[p.ID]; ok {
			t.Errorf("panels %q and %q share the id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: grid position %+v does not fit Grafana's 24 columns", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: data source %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) && !strings.Contains(tg.Expr, "$instance") {
				t.Errorf("panel %q, query %s: %q ignores the instance variable", p.Title, tg.RefID, tg.Expr)
			}
		}
	}
	// What the issue asks the dashboard to show.
	var names []string
	for _, e := range d.exprs(t) {
		names = append(names, promcheck.Names(e)...)
	}
	for _, want := range []struct{ what, metric string }{
		{"connections", "spacecaptain_connections_open"},
		{"handshakes", "spacecaptain_tls_handshakes_total"},
		{"refusals by reason", "spacecaptain_connections_refused_total"},
		{"reloads and their failures", "spacecaptain_cert_reloads_total"},
		{"certificate time left", "spacecaptain_cert_not_after_timestamp_seconds"},
		{"request latency", "spacecaptain_request_duration_seconds_bucket"},
	} {
		if !slices.Contains(names, want.metric) {
			t.Errorf("the dashboard does not show %s: no query of %s", want.what, want.metric)
		}
	}
}

// prometheusSeries are series Prometheus adds to every scrape target
// itself; no exporter exports them.
var prometheusSeries = map[string]bool{"up": true}

// Issue 18: every metric the dashboard queries is exported by a running
// sc-server (the real binary, after a TLS connection with an ECHO).
func TestDashboardMetricsExported(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs sc-server (-short)")
	}
	d := mustLoad(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	page, err := promcheck.ScrapeServer(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	exported, err := promcheck.Exported(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	for k := range prometheusSeries {
		exported[k] = true
	}
	checked := 0
	for where, expr := range d.exprs(t) {
		names := promcheck.Names(expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric found in %q", where, expr)
		}
		checked += len(names)
		if missing := promcheck.Missing(names, exported); len(missing) > 0 {
			t.Errorf("%s: %q queries %v, which sc-server does not export", where, expr, missing)
		}
	}
	t.Logf("%d metric references checked against %d series names sc-server exports", checked, len(exported))
}
