package cli

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"90d", 90 * 24 * time.Hour},
		{"10y", 10 * 365 * 24 * time.Hour},
		{"1.5d", 36 * time.Hour},
		{"36h", 36 * time.Hour},
		{"1h30m", 90 * time.Minute},
		{"5s", 5 * time.Second},
		{"0", 0},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q): got %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if back, err := ParseDuration(FormatDuration(got)); err != nil || back != got {
			t.Errorf("FormatDuration(%v) = %q does not parse back: %v, %v", got, FormatDuration(got), back, err)
		}
	}
	for _, bad := range []string{"", "d", "1w", "5", "1e400d"} {
		if _, err := ParseDuration(bad); err == nil || !strings.Contains(err.Error(), "90d") {
			t.Errorf("ParseDuration(%q): got %v, want an error listing the units", bad, err)
		}
	}
	if _, err := ParseDuration("5"); !strings.Contains(err.Error(), "missing unit") {
		t.Errorf("a bare number: got %v, want \"missing unit\"", err)
	}
}
