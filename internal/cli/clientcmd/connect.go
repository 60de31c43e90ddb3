package clientcmd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spacecaptain/spacecaptain/pinning"
)

// session is a connection whose server is trusted.
type session struct {
	conn *client.Conn
	// keys is the server's KEYS reply when connect already asked for it
	// (trust on first use); nil otherwise, or when the server does not
	// answer KEYS.
	keys *keysReply
	// verified says whether the server's key was checked against
	// something trusted before this connection: pins, a CA, or the known
	// hosts file. It is false on first use and with --insecure.
	verified bool
	// verifiedBy says against what, or why not, for people.
	verifiedBy string
}

type keysReply struct {
	Current string   `json:"current"`
	Next    []string `json:"next"`
	// Client is who the server took this client for ("PIN NAME"), or ""
	// when it presented no identity.
	Client  string   `json:"client,omitempty"`
	Revoked []string `json:"revoked"`
}

// connect dials the server and makes sure it is trusted. Under trust on
// first use it then asks KEYS and records the handshake's key and the
// announced next keys — before any request of the caller's is sent, since
// recording can still find the server untrusted (another process recorded
// a different key meanwhile).
func (o *options) connect(ctx context.Context, st *streams) (*session, error) {
	copts := client.Options{Timeout: o.timeout, MaxMessage: o.maxMessage}
	var plan *trustPlan
	if o.plaintext {
		st.warnf("--plaintext: nothing is encrypted and the server is not authenticated")
	} else {
		var err error
		plan, err = o.newTrust(ctx, st)
		if err != nil {
			return nil, err
		}
		copts.TLSConfig = plan.trust.Config()
		id, err := o.identity(st)
		if err != nil {
			return nil, err
		}
		if id != nil {
			// Presented only when the server asks for one.
			copts.TLSConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return id, nil }
		}
		if o.udp && o.identityFile != "" && o.identityFile != identityNone {
			return nil, cli.Usagef("--identity is not supported with --udp yet: DTLS presents no client certificate")
		}
		if o.udp {
			copts.TLSConfig, copts.DTLS = nil, dtlsOptions(plan.trust)
		}
	}
	conn, err := client.Dial(ctx, o.server, copts)
	if err != nil {
		return nil, err
	}
	s := &session{conn: conn}
	if plan != nil {
		switch plan.trust.Mode() {
		case pinning.ModeInsecure:
			s.verifiedBy = "--insecure: nothing was checked"
		case pinning.ModePin:
			s.verified, s.verifiedBy = true, "its key is one of the --pin values"
		case pinning.ModeCA:
			s.verified, s.verifiedBy = true, "its chain verifies against --ca "+o.ca
		case pinning.ModeCAPin:
			s.verified, s.verifiedBy = true, "its chain verifies against --ca "+o.ca+" and its key matches --pin"
		case pinning.ModeTOFU:
			s.verified, s.verifiedBy = true, "its key is on file in "+plan.store.Path()
		}
	}
	if plan == nil || plan.trust.Mode() != pinning.ModeTOFU {
		return s, nil
	}
	if err := s.recordTOFU(ctx, o, st, plan); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// recordTOFU asks the server's KEYS inside the verified session and
// records what the handshake proved and what the server announced.
func (s *session) recordTOFU(ctx context.Context, o *options, st *streams, plan *trustPlan) error {
	cs, _ := s.conn.ConnectionState()
	pin := pinning.PinOf(cs.PeerCertificates[0])
	kctx, cancel := context.WithTimeout(ctx, o.timeout)
	ks, kerr := s.conn.KeySet(kctx)
	cancel()
	var serr *client.ServerError
	var perr *proto.ProtocolError
	var rec pinning.Recorded
	var recErr error
	switch {
	case kerr == nil:
		s.keys = &keysReply{Current: ks.Current, Next: nonNil(ks.Next), Revoked: nonNil(ks.Revoked)}
		rec, recErr = recordAnnounced(plan.trust, cs, ks)
		if errors.Is(recErr, pinning.ErrBadAnnouncement) {
			st.warnf("%v; recording only the key the handshake proved", recErr)
			rec, recErr = plan.trust.Record(cs)
		}
	case errors.As(kerr, &serr), errors.As(kerr, &perr) && perr.Kind == proto.KindBadKeys:
		// A server that does not know KEYS (or garbles it) is fine: the
		// handshake's key is recorded on its own.
		rec, recErr = plan.trust.Record(cs)
	default:
		return fmt.Errorf("asking %s for its key pins: %w", o.server, kerr)
	}
	var ke *pinning.KeyError
	var ue *pinning.UnknownHostError
	var le *pinning.LineError
	switch {
	case recErr == nil:
		if rec.FirstUse {
			s.verified, s.verifiedBy = false, "first use: "+plan.trust.Host()+" was not in "+plan.store.Path()+", so its key was trusted as it came"
		}
		tellRecorded(st, plan, pin, rec)
	case errors.As(recErr, &ke), errors.As(recErr, &ue), errors.As(recErr, &le):
		return recErr
	default:
		// The trust decision stands; only the bookkeeping failed.
		st.warnf("the server is trusted, but recording it failed: %v", recErr)
	}
	return nil
}

// tellRecorded says on stderr what changed in the known hosts file, as
// ssh says "Permanently added ... to the list of known hosts".
func tellRecorded(st *streams, plan *trustPlan, pin pinning.Pin, rec pinning.Recorded) {
	host, path := plan.trust.Host(), plan.store.Path()
	switch {
	case rec.FirstUse:
		st.notef("trusting %s on first use: recorded its key %v in %s", host, pin, path)
	case rec.Promoted:
		st.notef("%s has moved to its next key %v, which it announced before; recorded in %s", host, pin, path)
	}
	for _, p := range rec.Added {
		if !rec.FirstUse {
			st.notef("recorded the next key %v that %s announced, for its next key rollover", p, host)
		}
	}
	for _, p := range rec.Dropped {
		st.notef("%s no longer announces the key %v; removed it from %s", host, p, path)
	}
	for _, p := range rec.Revoked {
		st.warnf("%s's operator revoked the key %v: marked revoked in %s; a server presenting it is refused from now on", host, p, path)
	}
	for _, ig := range rec.Ignored {
		st.warnf("ignored the revocation of %v that %s announced: %s", ig.Pin, host, ig.Reason)
	}
}

func recordAnnounced(t *pinning.Trust, cs tls.ConnectionState, ks proto.KeySet) (pinning.Recorded, error) {
	cur, err := pinning.ParsePin(ks.Current)
	if err != nil {
		return pinning.Recorded{}, fmt.Errorf("the server announced an unreadable current pin %q: %w", ks.Current, pinning.ErrBadAnnouncement)
	}
	a := pinning.Announcement{Current: cur}
	for _, n := range ks.Next {
		p, err := pinning.ParsePin(n)
		if err != nil {
			return pinning.Recorded{}, fmt.Errorf("the server announced an unreadable next pin %q: %w", n, pinning.ErrBadAnnouncement)
		}
		a.Next = append(a.Next, p)
	}
	for _, n := range ks.Revoked {
		p, err := pinning.ParsePin(n)
		if err != nil {
			return pinning.Recorded{}, fmt.Errorf("the server announced an unreadable revoked pin %q: %w", n, pinning.ErrBadAnnouncement)
		}
		a.Revoked = append(a.Revoked, p)
	}
	return t.RecordAnnouncement(cs, a)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
