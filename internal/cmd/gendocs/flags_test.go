package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// eachFlag calls f for every flag of every command of the three roots.
func eachFlag(t *testing.T, f func(c *cobra.Command, fl *pflag.Flag)) {
	t.Helper()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.InitDefaultHelpFlag()
		c.LocalFlags().VisitAll(func(fl *pflag.Flag) { f(c, fl) })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	for _, r := range roots() {
		walk(r)
	}
}

// Every duration flag of every command takes the same units, days and
// years included, and says the same thing about a number without a unit
// (issue 12: --timeout 5 failed with "missing unit" while --validity took
// 90d).
func TestEveryDurationFlagTakesTheSameUnits(t *testing.T) {
	n := 0
	eachFlag(t, func(c *cobra.Command, fl *pflag.Flag) {
		if fl.Value.Type() != "duration" {
			return
		}
		n++
		name := c.CommandPath() + " --" + fl.Name
		// A fresh root per flag: Set changes the value.
		for _, in := range []string{"90d", "36h", "1h30m", "10s"} {
			if err := fl.Value.Set(in); err != nil {
				t.Errorf("%s %s: %v", name, in, err)
			}
		}
		if err := fl.Value.Set("5"); err == nil || !strings.Contains(err.Error(), "missing unit") || !strings.Contains(err.Error(), "90d") {
			t.Errorf("%s 5: got %v, want \"missing unit\" and the units", name, err)
		}
	})
	if n < 10 {
		t.Errorf("found %d duration flags; the walk is broken", n)
	}
}

// Help states each default once, and no empty list as a default (issue
// 12: "(default ecdsa-p256) (default ecdsa-p256)" and "(default [])").
func TestHelpDefaultsOnce(t *testing.T) {
	for _, r := range roots() {
		var walk func(c *cobra.Command)
		walk = func(c *cobra.Command) {
			usage := c.LocalFlags().FlagUsages()
			for _, line := range strings.Split(usage, "\n") {
				if strings.Count(line, "(default ") > 1 {
					t.Errorf("%s: a default stated twice: %s", c.CommandPath(), strings.TrimSpace(line))
				}
				if strings.Contains(line, "(default [])") {
					t.Errorf("%s: an empty list shown as a default: %s", c.CommandPath(), strings.TrimSpace(line))
				}
			}
			for _, sub := range c.Commands() {
				walk(sub)
			}
		}
		walk(r)
	}
}

// Every flag that takes one of a fixed set of values completes them
// (issue 12).
func TestEnumFlagsComplete(t *testing.T) {
	want := map[string][]string{
		"sc-cert init --key-type":      {"ecdsa-p256", "ed25519"},
		"sc-cert init --ca-key-type":   {"ecdsa-p256"},
		"sc-cert create --key-type":    {"ecdsa-p256", "rsa-2048"},
		"sc-cert fingerprint --format": {"pin", "pin-hex", "cert-sha256"},
		"sc-server --log-format":       {"text", "json"},
		"sc-server --log-level":        {"debug", "info", "warn", "error"},
		"sc-server --engine":           {"goroutine"},
		"sc-server --min-tls":          {"1.2", "1.3"},
		"sc-client echo --tofu":        {"prompt", "auto", "off"},
		"sc-client keys --tofu":        {"prompt", "auto", "off"},
	}
	found := map[string]bool{}
	eachFlag(t, func(c *cobra.Command, fl *pflag.Flag) {
		name := c.CommandPath() + " --" + fl.Name
		vals, ok := want[name]
		if !ok {
			return
		}
		found[name] = true
		fn, ok := c.GetFlagCompletionFunc(fl.Name)
		if !ok {
			t.Errorf("%s: no completion", name)
			return
		}
		got, _ := fn(c, nil, "")
		for _, v := range vals {
			if !strings.Contains(strings.Join(got, "\n")+"\n", v+"\n") && !containsPrefix(got, v) {
				t.Errorf("%s completes %q, want %q among them", name, got, v)
			}
		}
	})
	for name := range want {
		if !found[name] {
			t.Errorf("flag %s not found", name)
		}
	}
}

func containsPrefix(got []string, v string) bool {
	for _, g := range got {
		if g == v || strings.HasPrefix(g, v+"\t") {
			return true
		}
	}
	return false
}
