package certcmd

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spacecaptain/spacecaptain/pki"
	"github.com/spf13/pflag"
)

// durationValue is a flag for durations that also takes days and years,
// which certificate lifetimes are counted in: "90d", "10y", "36h", "1h30m".
type durationValue struct{ d *time.Duration }

func (v durationValue) String() string {
	if v.d == nil || *v.d == 0 {
		return ""
	}
	return formatDuration(*v.d)
}

func (v durationValue) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

func (durationValue) Type() string { return "duration" }

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "y": 365 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil || f <= 0 {
				return 0, fmt.Errorf("invalid duration %q (want e.g. 90d, 10y, 36h)", s)
			}
			return time.Duration(f * float64(unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 90d, 10y, 36h)", s)
	}
	return d, nil
}

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

func (v keyTypeValue) String() string { return v.t.String() }

func (v keyTypeValue) Set(s string) error {
	t, err := pki.ParseKeyType(s)
	if err != nil {
		return err
	}
	*v.t = t
	return nil
}

func (keyTypeValue) Type() string { return "type" }

func keyTypeNames() string {
	var s []string
	for _, t := range pki.KeyTypes() {
		s = append(s, string(t))
	}
	return strings.Join(s, ", ")
}

// sanFlags are the subject alternative name flags of init and create.
type sanFlags struct {
	dns []string
	ips []net.IP
	cn  string
}

func (f *sanFlags) add(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.dns, "dns", nil, "DNS `NAME` for the certificate (can be repeated; default localhost and the host name, plus IPs 127.0.0.1 and ::1, when no --dns or --ip is given)")
	fs.IPSliceVar(&f.ips, "ip", nil, "IP `ADDRESS` for the certificate (can be repeated)")
	fs.StringVar(&f.cn, "cn", "", "subject common `NAME`, for people only (default: the first DNS name)")
}

// validityFlags are --validity and --not-after.
type validityFlags struct {
	validity time.Duration
	notAfter time.Time
}

func (f *validityFlags) add(fs *pflag.FlagSet, def string) {
	fs.Var(durationValue{&f.validity}, "validity", "how long the certificate is valid, as a `DURATION` such as 90d, 10y or 36h (default "+def+")")
	fs.Var(timeValue{&f.notAfter}, "not-after", "expiry as an RFC 3339 `TIME`, e.g. 2027-01-31T00:00:00Z (instead of --validity)")
}
