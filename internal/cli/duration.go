package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// durationUnits names the units every duration flag takes, for errors.
const durationUnits = "a number with a unit: ms, s, m, h, d (days) or y (365 days), e.g. 5s, 1h30m, 36h, 90d, 10y"

// ParseDuration parses a duration as every flag of the commands takes
// it: Go's units (ns, us, ms, s, m, h, and sums such as 1h30m) and days
// ("90d") and years of 365 days ("10y"), which certificate lifetimes are
// counted in. "0" is zero; a number without a unit is refused with the
// units that exist.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "y": 365 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil || f != f || f > float64(1<<62)/float64(unit) || f < -float64(1<<62)/float64(unit) {
				return 0, fmt.Errorf("invalid duration %q: want %s", s, durationUnits)
			}
			return time.Duration(f * float64(unit)), nil
		}
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil && s != "0" {
		return 0, fmt.Errorf("invalid duration %q: missing unit: want %s", s, durationUnits)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want %s", s, durationUnits)
	}
	return d, nil
}

// FormatDuration prints a duration as [ParseDuration] reads it, in whole
// days when it is a whole number of them ("90d"), else as Go does.
func FormatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d != 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}

// durationValue is the pflag.Value of every duration flag.
type durationValue struct {
	d        *time.Duration
	positive bool
}

func (v durationValue) String() string {
	if v.d == nil || *v.d == 0 {
		return "0" // pflag shows no default for "0"
	}
	return FormatDuration(*v.d)
}

func (v durationValue) Set(s string) error {
	d, err := ParseDuration(s)
	if err != nil {
		return err
	}
	if v.positive && d <= 0 {
		return fmt.Errorf("invalid duration %q: want a positive one, %s", s, durationUnits)
	}
	*v.d = d
	return nil
}

func (durationValue) Type() string { return "duration" }

// DurationVar defines a duration flag that takes [ParseDuration]'s units,
// like every duration flag of the commands. Help shows the default (none
// when def is zero).
func DurationVar(fs *pflag.FlagSet, p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	fs.Var(durationValue{d: p}, name, usage)
}

// PositiveDurationVar is [DurationVar] for a flag that must be positive,
// such as a certificate's lifetime; the default is not shown when zero.
func PositiveDurationVar(fs *pflag.FlagSet, p *time.Duration, name string, def time.Duration, usage string) {
	*p = def
	fs.Var(durationValue{d: p, positive: true}, name, usage)
}
