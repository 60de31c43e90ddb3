package certcmd

import (
	"fmt"
	"net"

	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/pflag"
)

// formatDuration prints a duration in days and hours (to the nearest hour)
// when it is a day or more.
func formatDuration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var s string
	if d >= 24*time.Hour {
		d = d.Round(time.Hour)
	}
	switch days := int64(d / (24 * time.Hour)); {
	case days >= 1:
		hours := int64(d%(24*time.Hour)) / int64(time.Hour)
		s = fmt.Sprintf("%dd%dh", days, hours)
	case d >= time.Minute:
		s = d.Truncate(time.Minute).String()
	default:
		s = d.Truncate(time.Second).String()
	}
	if neg {
		return "-" + s
	}
	return s
}

// timeValue is a flag for an RFC 3339 time.
type timeValue struct{ t *time.Time }

func (v timeValue) String() string {
	if v.t == nil || v.t.IsZero() {
		return ""
	}
	return v.t.Format(time.RFC3339)
}

func (v timeValue) Set(s string) error {
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("invalid time %q (want RFC 3339, e.g. 2027-01-31T00:00:00Z)", s)
	}
	*v.t = t
	return nil
}

func (timeValue) Type() string { return "time" }

// keyTypeValue is a flag for a pki.KeyType.
type keyTypeValue struct{ t *pki.KeyType }

// String is empty for an unset type, so that help shows no made-up
// default: each flag's usage says what unset means.
func (v keyTypeValue) String() string { return string(*v.t) }

func (v keyTypeValue) Set(s string) error {
	t, err := pki.ParseKeyType(s)
	if err != nil {
		return err
	}
	*v.t = t
	return nil
}

func (keyTypeValue) Type() string { return "type" }

func keyTypeNames() string { return strings.Join(keyTypeList(), ", ") }

func keyTypeList() []string {
	var s []string
	for _, t := range pki.KeyTypes() {
		s = append(s, string(t))
	}
	return s
}

// ipListValue is a flag of IP addresses, repeated or comma-separated. Its
// String is empty when none were given, so help shows no "(default [])".
type ipListValue struct{ ips *[]net.IP }

func (v ipListValue) String() string {
	var s []string
	for _, ip := range *v.ips {
		s = append(s, ip.String())
	}
	return strings.Join(s, ",")
}

func (v ipListValue) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		ip := net.ParseIP(strings.TrimSpace(f))
		if ip == nil {
			return fmt.Errorf("%q is not an IP address (a host name goes in --dns)", f)
		}
		*v.ips = append(*v.ips, ip)
	}
	return nil
}

func (ipListValue) Type() string { return "ip" }

// sanFlags are the subject alternative name flags of init and create.
type sanFlags struct {
	dns []string
	ips []net.IP
	cn  string
}

func (f *sanFlags) add(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.dns, "dns", nil, "DNS `NAME` for the certificate (can be repeated; default localhost and the host name, plus IPs 127.0.0.1 and ::1, when no --dns or --ip is given)")
	fs.Var(ipListValue{&f.ips}, "ip", "IP `ADDRESS` for the certificate (can be repeated)")
	fs.StringVar(&f.cn, "cn", "", "subject common `NAME`, for people only (default: the first DNS name)")
}

// validate refuses an IP address given as a DNS name: clients check IP
// addresses against the certificate's IP names, never its DNS names, so
// such a certificate would not be valid for the address.
func (f *sanFlags) validate() error {
	for _, d := range f.dns {
		if ip := net.ParseIP(strings.Trim(d, "[]")); ip != nil {
			return cli.Usagef("--dns %s is an IP address: give it with --ip %s (clients check an address against the certificate's IP names, not its DNS names)", d, ip)
		}
	}
	return nil
}

// validityFlags are --validity and --not-after.
type validityFlags struct {
	validity time.Duration
	notAfter time.Time
}

func (f *validityFlags) add(fs *pflag.FlagSet, def string) {
	cli.PositiveDurationVar(fs, &f.validity, "validity", 0, "how long the certificate is valid, as a `DURATION` such as 90d, 10y or 36h (default "+def+")")
	fs.Var(timeValue{&f.notAfter}, "not-after", "expiry as an RFC 3339 `TIME`, e.g. 2027-01-31T00:00:00Z (instead of --validity)")
}
