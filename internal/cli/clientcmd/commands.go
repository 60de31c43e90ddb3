package clientcmd

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spf13/cobra"
)

// runE wraps a command's run function: it builds the streams and turns
// the error into sc-client's report (exit code, banner, JSON).
func runE(o *options, env *Env, run func(ctx context.Context, st *streams, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		st := newStreams(cmd, env)
		if err := o.applyHosts(cmd); err != nil {
			return finish(st, o, err)
		}
		if err := o.validate(); err != nil {
			return finish(st, o, err)
		}
		return finish(st, o, run(cmd.Context(), st, args))
	}
}

// resultJSON is the --json form of one request and its reply.
type resultJSON struct {
	Server  string `json:"server,omitempty"`
	Type    string `json:"type"`
	Request string `json:"request,omitempty"`
	Reply   string `json:"reply"`
}

// newTextCmd makes echo and reverse.
func newTextCmd(o *options, env *Env, t proto.Type, name, short string) *cobra.Command {
	return &cobra.Command{
		Use:   name + " TEXT...",
		Short: short,
		Long: short + `. Several arguments are joined with spaces, as echo(1) does.
With --nul the text is sent NUL-terminated, as the original C client sends
strings, and the NUL that comes back is not printed.`,
		Example: "  sc-client " + name + " hello --ca certs/ca.crt\n  sc-client " + name + " 'hello world' --nul --json",
		Args:    minArgs(1, "TEXT"),
		RunE: runE(o, env, func(ctx context.Context, st *streams, args []string) error {
			return runOne(ctx, st, o, t, strings.Join(args, " "))
		}),
	}
}

func newTimeCmd(o *options, env *Env) *cobra.Command {
	return &cobra.Command{
		Use:     "time",
		Short:   "Print the server's UTC time",
		Example: "  sc-client time --ca certs/ca.crt",
		Args:    cli.ExactArgs(0, "no arguments"),
		RunE: runE(o, env, func(ctx context.Context, st *streams, _ []string) error {
			return runOne(ctx, st, o, proto.Time, "")
		}),
	}
}

// runOne connects, sends one request and prints its reply.
func runOne(ctx context.Context, st *streams, o *options, t proto.Type, text string) error {
	s, err := o.connect(ctx, st)
	if err != nil {
		return err
	}
	defer s.conn.Close()
	reply, err := o.do(ctx, s, t, text)
	if err != nil {
		return err
	}
	if o.json {
		return cli.PrintJSON(st.stdout, resultJSON{Server: o.server, Type: typeName(t), Request: text, Reply: reply})
	}
	_, err = fmt.Fprintln(st.stdout, reply)
	return err
}

// do sends one request of text (NUL-terminated with --nul) and returns the
// reply's text, without the NUL.
func (o *options) do(ctx context.Context, s *session, t proto.Type, text string) (string, error) {
	body := []byte(text)
	if o.nul {
		body = append(body, 0)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	reply, err := s.conn.Do(ctx, t, body)
	if err != nil {
		return "", fmt.Errorf("%v %q to %s: %w", t, text, o.server, err)
	}
	if o.nul {
		reply = bytes.TrimSuffix(reply, []byte{0})
	}
	return string(reply), nil
}

func newKeysCmd(o *options, env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "keys",
		Short: "Print the server's key pins: the current one and any next ones",
		Long: `keys asks the server for the pins of its keys (KEYS): the key it serves with
now and the keys it will roll over to. The answer travels inside the
verified TLS session, so it is as trustworthy as the way the server was
trusted. Hand the next pins to pin-mode clients (--pin) ahead of a rollover;
trust-on-first-use clients record them by themselves. The output says
whether the connection was verified (against --pin, --ca or the known
hosts file): on first use, or with --insecure, it was not, and the pins
prove nothing yet.`,
		Example: "  sc-client keys --ca certs/ca.crt\n  sc-client keys --json",
		Args:    cli.ExactArgs(0, "no arguments"),
		RunE: runE(o, env, func(ctx context.Context, st *streams, _ []string) error {
			s, err := o.connect(ctx, st)
			if err != nil {
				return err
			}
			defer s.conn.Close()
			k := s.keys
			if k == nil {
				kctx, cancel := context.WithTimeout(ctx, o.timeout)
				ks, err := s.conn.KeySet(kctx)
				cancel()
				if err != nil {
					return fmt.Errorf("asking %s for its key pins: %w", o.server, err)
				}
				k = &keysReply{Current: ks.Current, Next: nonNil(ks.Next), Revoked: nonNil(ks.Revoked)}
			}
			k.Client = s.conn.KeysClient()
			if o.json {
				return cli.PrintJSON(st.stdout, struct {
					Server string `json:"server"`
					*keysReply
					// Verified says whether the connection that carried
					// the pins was checked against something trusted.
					Verified   bool   `json:"verified"`
					VerifiedBy string `json:"verified_by"`
				}{o.server, k, s.verified, s.verifiedBy})
			}
			fmt.Fprintf(st.stdout, "current %s\n", k.Current)
			for _, n := range k.Next {
				fmt.Fprintf(st.stdout, "next %s\n", n)
			}
			for _, n := range k.Revoked {
				fmt.Fprintf(st.stdout, "revoked %s\n", n)
			}
			if k.Client != "" {
				fmt.Fprintf(st.stdout, "client %s\n", k.Client)
			}
			if s.verified {
				fmt.Fprintf(st.stdout, "verified: %s\n", s.verifiedBy)
			} else {
				fmt.Fprintf(st.stdout, "NOT VERIFIED: %s; compare the pins with the operator's before relying on them\n", s.verifiedBy)
			}
			return nil
		}),
	}
}

// minArgs is cobra.MinimumNArgs with a usage error and a hint.
func minArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < n {
			return cli.WithHint(cli.Usagef("%s: want %s", c.CommandPath(), what), fmt.Sprintf("run '%s --help' for usage", c.CommandPath()))
		}
		return nil
	}
}

// typeName is the lower-case name of a message type, for JSON.
func typeName(t proto.Type) string { return strings.ToLower(t.String()) }
