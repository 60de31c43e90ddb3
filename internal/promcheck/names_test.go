package promcheck

import (
	"slices"
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	tests := []struct {
		name, expr string
		want       []string
	}{
		{"plain", `spacecaptain_connections_open`, []string{"spacecaptain_connections_open"}},
		{"matchers and rate", `rate(spacecaptain_tls_handshakes_total{result!="ok", job=~"$job"}[$__rate_interval])`,
			[]string{"spacecaptain_tls_handshakes_total"}},
		{"aggregation with by before and after",
			`sum by (reason) (rate(spacecaptain_connections_refused_total[5m])) / ignoring(reason) group_left sum without (instance) (rate(spacecaptain_connections_accepted_total[5m]))`,
			[]string{"spacecaptain_connections_accepted_total", "spacecaptain_connections_refused_total"}},
		{"histogram quantile", `histogram_quantile(0.99, sum by (le, type) (rate(spacecaptain_request_duration_seconds_bucket{type="echo"}[5m])))`,
			[]string{"spacecaptain_request_duration_seconds_bucket"}},
		{"arithmetic, time and numbers", `(spacecaptain_cert_not_after_timestamp_seconds - time()) / 86400 < 14 * 1e0`,
			[]string{"spacecaptain_cert_not_after_timestamp_seconds"}},
		{"label_replace strings", `label_replace(up{job="sc-server"}, "host", "$1", "instance", "(.*):.*") == 0 or process_open_fds offset 5m`,
			[]string{"process_open_fds", "up"}},
		{"recording rule name", `spacecaptain:handshake_refusals:rate5m > 0.05 * spacecaptain:connection_attempts:rate5m`,
			[]string{"spacecaptain:connection_attempts:rate5m", "spacecaptain:handshake_refusals:rate5m"}},
		{"grafana variables", `increase(spacecaptain_cert_reloads_total{instance=~"${instance}"}[$__range]) and on(instance) [[x]]`,
			[]string{"spacecaptain_cert_reloads_total"}},
		{"bool and subquery", `max_over_time((go_goroutines > bool 100)[1h:5m])`, []string{"go_goroutines"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Names(tt.expr); !slices.Equal(got, tt.want) {
				t.Errorf("Names(%q)\n got %q\nwant %q", tt.expr, got, tt.want)
			}
		})
	}
}

func TestExportedAndMissing(t *testing.T) {
	page := `# HELP spacecaptain_connections_open Connections held now.
# TYPE spacecaptain_connections_open gauge
spacecaptain_connections_open 3
# TYPE spacecaptain_request_duration_seconds histogram
spacecaptain_request_duration_seconds_bucket{type="echo",le="1e-06"} 0
spacecaptain_request_duration_seconds_sum{type="echo"} 0
spacecaptain_request_duration_seconds_count{type="echo"} 0
`
	exp, err := Exported(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"spacecaptain_connections_open", "spacecaptain_request_duration_seconds_bucket", "spacecaptain_connection_open", "spacecaptain_request_duration_seconds"}
	got := Missing(names, exp)
	want := []string{"spacecaptain_connection_open", "spacecaptain_request_duration_seconds"}
	if !slices.Equal(got, want) {
		t.Errorf("Missing: got %q, want %q (a misspelt name, and a histogram's family name, which no series has)", got, want)
	}
	if _, err := Exported(strings.NewReader("# nothing\n")); err == nil {
		t.Error("an empty page was accepted")
	}
}
