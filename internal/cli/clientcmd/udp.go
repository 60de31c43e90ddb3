package clientcmd

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"

	"github.com/spf13/pflag"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/pinning"
)

// addUDPFlags adds --udp to a protocol command's flags.
func (o *options) addUDPFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.udp, "udp", false, "talk DTLS 1.2 over UDP to a sc-server --dtls, trusted as over TCP (--ca, --pin, or trust on first use with the same known hosts entry for HOST:PORT); a lost request is sent again until --timeout")
}

// validateUDP checks --udp against the other flags.
func (o *options) validateUDP() error {
	if o.udp && o.plaintext {
		return cli.Usagef("--udp can't be used with --plaintext: DTLS is always encrypted")
	}
	return nil
}

// dtlsOptions is how connect dials with --udp: pinning's VerifyPeer is the
// whole check, the same decision as over TLS, on the same known hosts
// entry (a key is a key, whatever carries it).
func dtlsOptions(t *pinning.Trust) *client.DTLSOptions {
	d := &client.DTLSOptions{Verify: t.VerifyPeer}
	// RFC 6066 allows no IP address as SNI; crypto/tls sends none then.
	if name := t.ServerName(); name != "" && net.ParseIP(name) == nil {
		d.ServerName = name
	}
	return d
}

// fetchChain fetches the server's certificates without trusting it, for
// the first-use prompt: over TLS, or over DTLS with --udp.
func (o *options) fetchChain(ctx context.Context) ([]*x509.Certificate, error) {
	if o.udp {
		sni := o.serverName
		if sni == "" {
			sni, _, _ = net.SplitHostPort(o.server)
		}
		if net.ParseIP(sni) != nil {
			sni = ""
		}
		certs, _, err := client.FetchDTLSCertificates(ctx, o.server, sni, o.timeout)
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", o.server, err)
		}
		return certs, nil
	}
	certs, _, err := pinning.FetchChain(ctx, o.server, pinning.FetchOptions{ServerName: o.serverName, Timeout: o.timeout})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", o.server, err)
	}
	return certs, nil
}
