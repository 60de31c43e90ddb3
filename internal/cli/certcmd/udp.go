package certcmd

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/spf13/pflag"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/client"
)

// addUDPFlag adds --udp, for a HOST:PORT that is a DTLS server.
func addUDPFlag(fs *pflag.FlagSet, udp *bool) {
	fs.BoolVar(udp, "udp", false, "HOST:PORT is a DTLS server (sc-server --dtls): fetch its certificate over DTLS 1.2 on UDP")
}

// fetchDTLS fetches a DTLS server's chain without trusting it.
func fetchDTLS(ctx context.Context, addr string, o targetOptions) (*target, error) {
	sni := o.serverName
	if sni == "" {
		sni, _, _ = net.SplitHostPort(addr)
	}
	if net.ParseIP(sni) != nil {
		sni = "" // RFC 6066: no IP address as SNI
	}
	certs, state, err := client.FetchDTLSCertificates(ctx, addr, sni, o.timeout)
	if err != nil {
		return nil, cli.WithHint(fmt.Errorf("fetching the certificate of %s: %w", addr, err),
			fmt.Sprintf("is a DTLS server (sc-server --dtls) listening on UDP %s?", addr))
	}
	return &target{name: addr, certs: certs, state: &state, dtls: true}, nil
}

// versionName names the protocol version a server was fetched with.
func versionName(src *target) string {
	if src.dtls {
		return "DTLS 1.2"
	}
	return tls.VersionName(src.state.Version)
}
