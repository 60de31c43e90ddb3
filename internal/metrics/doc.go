// Package metrics exports what a Space Captain server does to Prometheus,
// and answers the liveness and readiness probes of an orchestrator or a
// load balancer.
//
// [New] makes a [Metrics]: pass it to the server as server.Options.Events
// (it implements [server.Events], identically for every engine), and call
// [Metrics.CertLoaded] and [Metrics.CertReloaded] from the certificate
// source's reload hook. [NewServer] makes the HTTP side — /metrics,
// /healthz and /readyz — to run on a listener of its own
// (sc-server --metrics-listen ADDR), never on the game port.
//
// Every metric is on the Metrics' own registry: there is no global state
// and no init().
//
// # Metrics
//
// Names are stable; units are in the names. Label values are bounded:
// they come from package server's and package proto's constants, never
// from clients.
//
//   - spacecaptain_connections_open (gauge): connections held now,
//     accepted and not yet closed, handshakes included.
//   - spacecaptain_connections_max (gauge): the server's max conns; only
//     when [Options.MaxConns] is set.
//   - spacecaptain_connections_accepted_total (counter): connections
//     accepted and counted against max conns.
//   - spacecaptain_connections_refused_total{reason} (counter):
//     connections closed at once without being served; reason max_conns
//     or shutting_down.
//   - spacecaptain_connections_closed_total{reason} (counter): accepted
//     connections closed; reason eof, handshake_error, handshake_timeout,
//     idle_timeout, write_timeout, protocol_error, read_error,
//     write_error, shutdown, forced or revoked (a revoked client's live
//     session, cut; the Close… constants of package server).
//   - spacecaptain_tls_handshakes_total{result,tls_version,resumed}
//     (counter): TLS handshakes. result is ok, timeout, client_closed,
//     not_tls, client_alert, error or key_unavailable (the server's own
//     key failed to sign: a PKCS#11 token that stopped answering)
//     ([HandshakeOK] and the rest), or, for a client the server refused
//     (--client-auth), the reason: no_client_cert, unknown_client,
//     client_revoked, client_cert_expired or bad_client_chain (package
//     pinning's ClientRefusalReasons, the one list later transports
//     extend);
//     tls_version 1.2 or 1.3 (1.0 and 1.1 if a config allows them; unknown
//     when the handshake failed before a version was chosen); resumed true
//     for a resumed session, false for a full handshake.
//   - spacecaptain_tls_handshake_duration_seconds{resumed} (histogram):
//     the time a successful handshake took, from its start just after
//     accept; failed ones are only counted.
//   - spacecaptain_requests_total{type} (counter): requests answered, by
//     type echo, reverse, time or keys.
//   - spacecaptain_request_duration_seconds{type} (histogram): the time
//     the server spent building one reply; not network, not queueing.
//   - spacecaptain_request_bytes_total{type} (counter): bytes of request
//     frames, headers included (protocol bytes, not TLS or TCP).
//   - spacecaptain_reply_bytes_total{type} (counter): bytes of their reply
//     frames, headers included.
//   - spacecaptain_protocol_errors_total{kind} (counter): input that broke
//     the protocol; kind too_large or truncated (the connection is
//     closed), unknown_type (an ERROR reply; the connection goes on).
//   - spacecaptain_cert_not_after_timestamp_seconds (gauge): when the
//     certificate being served expires, as a Unix timestamp.
//   - spacecaptain_cert_not_before_timestamp_seconds (gauge): when it
//     became valid, as a Unix timestamp.
//   - spacecaptain_cert_info{serial,pin} (gauge): always 1, one series:
//     the certificate being served, its serial as sc-cert inspect prints
//     it and its key's sha256// pin. On rotation the old series goes.
//   - spacecaptain_cert_reloads_total{result} (counter): reload attempts
//     of the certificate source; result changed, unchanged or failed.
//     failed counts refusals that keep the old pair serving: a look that
//     follows a file event and may have caught files mid-change (a
//     rotation between its renames) is looked at again once the files
//     settle, and only that second look is counted.
//   - spacecaptain_cert_last_reload_success_timestamp_seconds (gauge):
//     the last reload that did not fail, as a Unix timestamp.
//   - spacecaptain_client_list_entries{list} (gauge): the size of each
//     client list in force (--client-auth): allow (pins), revoked
//     (entries), ca (client CA certificates).
//   - spacecaptain_client_list_reload_failures_total{list} (counter):
//     loads of a client list file that were refused (the line number is
//     in the log); the previous list stays in force.
//   - spacecaptain_unannounced_key_changes_total (counter): certificates,
//     at start or by a reload, whose key was neither the key served
//     before nor an announced next key (sc-server --key-change): clients
//     pinned to the old key refuse them. Each distinct change counts once.
//
// # Transports
//
// With [Options.DTLS], the DTLS server reports into the same families
// through [Metrics.DTLS], its series labelled transport="dtls" (reasons
// of its own: refused half_open and cookie_timeout; tls_version 1.2 for
// DTLS 1.2). The TCP server's series carry no transport label, exactly
// as before, so queries written for them read the same; select TCP alone
// with transport="", DTLS with transport="dtls", both by leaving the
// label out (sum without(transport)).
//
// The histograms' buckets are fixed: 0.5 ms to 5 s (the default handshake
// timeout) for handshakes, 1 µs to 100 ms for requests, whose replies take
// microseconds to build.
//
// The certificate gauges are absent until a certificate is loaded (a
// plaintext server has none), so that no zero expiry ever looks expired.
// Unless [Options.OmitRuntime] is set, the Go runtime (go_*) and process
// (process_*: CPU, resident memory, open file descriptors and their limit)
// metrics of client_golang are there too.
//
// Requests of a type the protocol does not define are not in the request
// metrics: they are protocol errors of kind unknown_type. A handshake cut by
// a shutdown counts as a timeout (graceful: the server ends it with an
// expired deadline) or an error (forced).
//
// # Alerts
//
// Examples in PromQL:
//
//	spacecaptain_cert_not_after_timestamp_seconds - time() < 14 * 86400     expires within 14 days (the renewer should have acted)
//	increase(spacecaptain_cert_reloads_total{result="failed"}[15m]) > 0     new certificate files were refused (even after a second look)
//	  and on(job, instance) time() - spacecaptain_cert_last_reload_success_timestamp_seconds > 180
//	                                                                         ... and none has loaded since: the old one still serves
//	spacecaptain_connections_open / spacecaptain_connections_max > 0.9      near max conns
//	rate(spacecaptain_connections_refused_total{reason="max_conns"}[5m]) > 0
//	rate(spacecaptain_tls_handshakes_total{result="client_alert"}[5m]) > 0  clients reject the certificate: a pin or CA mismatch
//	rate(spacecaptain_tls_handshakes_total{result="key_unavailable"}[5m]) > 0  the key's token stopped signing
//	process_open_fds / process_max_fds > 0.9
//
// # Health
//
// /healthz is 200 while the process runs. /readyz is 200 when every
// [Check] given to [NewServer] passes; sc-server gives "listening" and, with
// TLS, "certificate" ([Metrics.CheckCertificate]: loaded and within its
// validity). A certificate that is about to expire keeps the server ready
// — expiry is an alert and a log warning — so that a fleet sharing one
// certificate does not leave its load balancer all at once.
package metrics
