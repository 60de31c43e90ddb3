package clientcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spacecaptain/spacecaptain/internal/cli"
	"github.com/spacecaptain/spacecaptain/internal/client"
	"github.com/spacecaptain/spacecaptain/internal/proto"
	"github.com/spf13/cobra"
)

type chatOptions struct {
	typ      string        // --type: echo, reverse or time
	random   bool          // --random
	count    int           // --count: requests in --random mode; 0 means no limit
	duration time.Duration // --duration: --random mode's time limit; 0 means none
	maxDelay time.Duration // --max-delay: the longest random pause
	seed     uint64        // --seed: 0 means a random seed
}

func newChatCmd(o *options, env *Env) *cobra.Command {
	co := &chatOptions{}
	cmd := &cobra.Command{
		Use:   "chat [--type echo|reverse|time] | chat --random [--count N] [--duration D]",
		Short: "Send each line of standard input and print each reply, or random requests",
		Long: `chat sends each line of standard input (without its line ending) as a
request, ECHO by default, and prints each reply on a line of its own, in
order, until the input ends. Requests are pipelined: every line available at
once goes out in one write, and replies are printed as they come.

With --random it reproduces the original C client's loop instead: random
ECHO, REVERSE and TIME requests with random text, sent as NUL-terminated
strings, each followed by a random pause of up to --max-delay. Every reply is
checked (the echo, the reversal, the time format) and printed. It stops after
--count requests or --duration, whichever comes first (with both 0 it runs
until interrupted).`,
		Example: `  printf 'hello\nworld\n' | sc-client chat --ca certs/ca.crt
  sc-client chat --type reverse
  sc-client chat --random --count 100 --max-delay 200ms --json`,
		Args: cli.ExactArgs(0, "no arguments (the lines come from standard input)"),
	}
	cmd.RunE = runE(o, env, func(ctx context.Context, st *streams, _ []string) error {
		if err := co.validate(cmd); err != nil {
			return err
		}
		if co.random {
			return runRandom(ctx, st, o, co)
		}
		return runChat(ctx, st, o, co)
	})
	fs := cmd.Flags()
	fs.StringVar(&co.typ, "type", "echo", "request `TYPE` for each line: echo, reverse or time")
	fs.BoolVar(&co.random, "random", false, "send random requests with random pauses, like the original client, instead of reading standard input")
	fs.IntVar(&co.count, "count", 10, "with --random: how many requests (0: no limit)")
	cli.DurationVar(fs, &co.duration, "duration", 0, "with --random: stop after this long (0: no limit)")
	cli.DurationVar(fs, &co.maxDelay, "max-delay", time.Second, "with --random: the longest pause between requests")
	fs.Uint64Var(&co.seed, "seed", 0, "with --random: seed of the random choices, to repeat a run (0: a random seed)")
	return cmd
}

func (co *chatOptions) validate(cmd *cobra.Command) error {
	switch co.typ {
	case "echo", "reverse", "time":
	default:
		return cli.Usagef("--type %q: want echo, reverse or time", co.typ)
	}
	if co.count < 0 || co.duration < 0 || co.maxDelay < 0 {
		return cli.Usagef("--count, --duration and --max-delay can't be negative")
	}
	changed := cmd.Flags().Changed
	if co.random && changed("type") {
		return cli.Usagef("--type can't be used with --random, which picks random types")
	}
	if !co.random {
		for _, f := range []string{"count", "duration", "max-delay", "seed"} {
			if changed(f) {
				return cli.Usagef("--%s is for --random only", f)
			}
		}
	}
	return nil
}

func (co *chatOptions) msgType() proto.Type {
	switch co.typ {
	case "reverse":
		return proto.Reverse
	case "time":
		return proto.Time
	}
	return proto.Echo
}

// chatLine is a request sent and waiting for its reply.
type chatLine struct {
	t    proto.Type
	text string
}

// runChat pipelines standard input's lines. One goroutine reads lines and
// sends them, flushing whenever no complete line is left in the input
// buffer, so that what arrives together leaves in one write; another reads
// and prints the replies. Both are bounded by --timeout while a reply is
// due.
func runChat(ctx context.Context, st *streams, o *options, co *chatOptions) error {
	s, err := o.connect(ctx, st)
	if err != nil {
		return err
	}
	defer s.conn.Close()
	t := co.msgType()
	pending := make(chan chatLine, 4096)
	done := make(chan struct{})
	defer close(done)
	sendErr := make(chan error, 1)
	recvErr := make(chan error, 1)

	go func() { sendErr <- o.sendLines(st, s.conn, t, pending, done) }()
	go func() { recvErr <- o.printReplies(st, s.conn, pending) }()

	select {
	case err := <-recvErr:
		if err == nil {
			// The receiver ends cleanly only after the sender closed
			// pending, so the sender is done.
			return <-sendErr
		}
		// A failed send (a line over --max-message) explains a failed
		// receive better than the receive's own error.
		select {
		case serr := <-sendErr:
			if serr != nil {
				return serr
			}
		default:
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sendLines reads lines until the input ends and sends them; it closes
// pending when done. A failure closes pending too, after which the
// receiver stops at the end of what was sent.
func (o *options) sendLines(st *streams, c *client.Conn, t proto.Type, pending chan<- chatLine, done <-chan struct{}) error {
	defer close(pending)
	flush := func() error {
		_ = c.SetDeadline(time.Now().Add(o.timeout))
		return c.Flush()
	}
	err := o.sendLoop(st, c, t, pending, done, flush)
	if err != nil {
		// Send what was accepted before the failure, so that its replies
		// come and the receiver can finish.
		_ = flush()
	}
	return err
}

func (o *options) sendLoop(st *streams, c *client.Conn, t proto.Type, pending chan<- chatLine, done <-chan struct{}, flush func() error) error {
	in := st.stdin
	n := 0
	for {
		line, rerr := in.ReadString('\n')
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("reading standard input: %w", rerr)
		}
		if line != "" || rerr == nil {
			n++
			text := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			body := []byte(text)
			if o.nul {
				body = append(body, 0)
			}
			if err := c.Send(t, body); err != nil {
				return fmt.Errorf("line %d of standard input: %w (see --max-message)", n, err)
			}
			select {
			case pending <- chatLine{t, text}:
			default:
				// The receiver is behind: let it see what it waits for.
				if err := flush(); err != nil {
					return err
				}
				select {
				case pending <- chatLine{t, text}:
				case <-done:
					return nil
				}
			}
		}
		if rerr == io.EOF || !completeLineBuffered(st) {
			if err := flush(); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
	}
}

// completeLineBuffered reports whether the input buffer holds another
// whole line, which can be sent in the same write.
func completeLineBuffered(st *streams) bool {
	b, _ := st.stdin.Peek(st.stdin.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// printReplies prints the reply to each pending line, in order.
func (o *options) printReplies(st *streams, c *client.Conn, pending <-chan chatLine) error {
	enc := json.NewEncoder(st.stdout)
	for p := range pending {
		_ = c.SetDeadline(time.Now().Add(o.timeout))
		f, err := c.ReadReply()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("the server closed the connection before replying to %v %q: %w", p.t, p.text, err)
			}
			return fmt.Errorf("waiting for the reply to %v %q: %w", p.t, p.text, err)
		}
		switch f.Type {
		case p.t:
		case proto.Error:
			return &client.ServerError{Type: p.t, Reason: string(f.Body)}
		default:
			return &proto.ProtocolError{Kind: proto.KindUnexpectedReply, Err: fmt.Errorf("got a %v reply to a %v request", f.Type, p.t)}
		}
		reply := f.Body
		if o.nul {
			reply = bytes.TrimSuffix(reply, []byte{0})
		}
		if o.json {
			err = enc.Encode(resultJSON{Type: typeName(p.t), Request: p.text, Reply: string(reply)})
		} else {
			_, err = fmt.Fprintf(st.stdout, "%s\n", reply)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// runRandom is the original client's loop: random requests, random
// pauses, every reply checked.
func runRandom(ctx context.Context, st *streams, o *options, co *chatOptions) error {
	seed := co.seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	// Requests and pauses draw from separate streams, so that a seed
	// repeats the same requests whatever --max-delay is.
	rnd := rand.New(rand.NewPCG(seed, 1))
	rndPause := rand.New(rand.NewPCG(seed, 2))
	s, err := o.connect(ctx, st)
	if err != nil {
		return err
	}
	defer s.conn.Close()
	// --duration ends the loop, not a request under way: requests run
	// under ctx, the pauses and the loop under loopCtx.
	loopCtx := ctx
	if co.duration > 0 {
		var cancel context.CancelFunc
		loopCtx, cancel = context.WithTimeout(ctx, co.duration)
		defer cancel()
	}
	enc := json.NewEncoder(st.stdout)
	// The original client sends NUL-terminated strings.
	ro := *o
	ro.nul = true
	types := []proto.Type{proto.Echo, proto.Reverse, proto.Time}
	for i := 0; co.count == 0 || i < co.count; i++ {
		if i > 0 && co.maxDelay > 0 {
			pause := time.NewTimer(time.Duration(rndPause.Int64N(int64(co.maxDelay) + 1)))
			select {
			case <-pause.C:
			case <-loopCtx.Done():
				pause.Stop()
			}
		}
		if loopCtx.Err() != nil {
			break
		}
		t := types[rnd.IntN(len(types))]
		text := ""
		if t != proto.Time {
			text = randomText(rnd)
		}
		reply, err := ro.do(ctx, s, t, text)
		if err != nil {
			return err
		}
		if err := checkReply(t, text, reply); err != nil {
			return err
		}
		if o.json {
			err = enc.Encode(resultJSON{Type: typeName(t), Request: text, Reply: reply})
		} else {
			_, err = fmt.Fprintf(st.stdout, "%-7s %-34q -> %q\n", t, text, reply)
		}
		if err != nil {
			return err
		}
	}
	// Interrupted (Ctrl-C) rather than done.
	return ctx.Err()
}

const randomAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "

// randomText returns 1 to 32 random letters, digits and spaces.
func randomText(rnd *rand.Rand) string {
	b := make([]byte, 1+rnd.IntN(32))
	for i := range b {
		b[i] = randomAlphabet[rnd.IntN(len(randomAlphabet))]
	}
	return string(b)
}

// checkReply checks a reply against its request, as the original client's
// loop does.
func checkReply(t proto.Type, text, reply string) error {
	var want string
	switch t {
	case proto.Echo:
		want = text
	case proto.Reverse:
		want = reverseRunes(text)
	case proto.Time:
		if _, err := time.Parse(proto.TimeLayout, reply); err != nil {
			return &proto.ProtocolError{Kind: proto.KindUnexpectedReply, Err: fmt.Errorf("TIME reply %q is not a UTC time like 2006-01-02T15:04:05Z", reply)}
		}
		return nil
	}
	if reply != want {
		return &proto.ProtocolError{Kind: proto.KindUnexpectedReply, Err: fmt.Errorf("%v %q: got %q, want %q", t, text, reply, want)}
	}
	return nil
}

func reverseRunes(s string) string {
	if !utf8.ValidString(s) {
		b := []byte(s)
		for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		return string(b)
	}
	r := []rune(s)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return string(r)
}
