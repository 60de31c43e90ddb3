package metrics

import "github.com/prometheus/client_golang/prometheus"

// The names of the client list metrics (sc-server --client-auth).
const (
	NameClientListEntries        = "spacecaptain_client_list_entries"
	NameClientListReloadFailures = "spacecaptain_client_list_reload_failures_total"
)

// clientLists are the client list metrics: the size of each list in
// force, and how many loads of each file were refused.
type clientLists struct {
	entries  *prometheus.GaugeVec
	failures *prometheus.CounterVec
}

func newClientLists() *clientLists {
	return &clientLists{
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: NameClientListEntries,
			Help: "Entries of the client lists in force, by list (allow: pins of the allow list; revoked: entries of the revoke list; ca: client CA certificates).",
		}, []string{"list"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: NameClientListReloadFailures,
			Help: "Loads of a client list file that were refused (it did not parse or could not be read), by list; the previous list stays in force.",
		}, []string{"list"}),
	}
}

// ClientListLoaded reports a load of one client list file: list is
// "allow", "revoked" or "ca" (package pinning's ListAllow, ListRevoked,
// ListCA), entries the size of the list in force after it, and failed
// whether the file was refused. The CLI calls it from
// pinning.ClientVerifierOptions.OnLoad.
func (m *Metrics) ClientListLoaded(list string, entries int, failed bool) {
	m.clients.entries.WithLabelValues(list).Set(float64(entries))
	c := m.clients.failures.WithLabelValues(list)
	if failed {
		c.Inc()
	}
}
