package dtls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/pion/logging"
)

func itoa(n int) string { return strconv.Itoa(n) }

func errorf(format string, args ...any) error {
	if len(args) == 0 {
		return errors.New(format)
	}
	return fmt.Errorf(format, args...)
}

// pionLogs sends pion/dtls's logs to the server's logger at Debug: they
// are about single connections (a malformed record, a retransmission),
// which is what Debug is for. Trace is dropped. pion asks for a logger for
// every connection: the one for its "dtls" scope is made once and shared,
// so that a connection costs no logger of its own.
type pionLogs struct {
	log  *slog.Logger
	dtls pionLogger
}

func newPionLogs(log *slog.Logger) pionLogs {
	return pionLogs{log: log, dtls: pionLogger{log: log.With("pion", "dtls")}}
}

func (p pionLogs) NewLogger(scope string) logging.LeveledLogger {
	if scope == "dtls" && p.dtls.log != nil {
		return p.dtls
	}
	return pionLogger{log: p.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) enabled() bool { return l.log.Enabled(context.Background(), slog.LevelDebug) }

func (l pionLogger) print(msg string) {
	if l.enabled() {
		l.log.Debug(msg)
	}
}

func (l pionLogger) printf(format string, args ...any) {
	if l.enabled() {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}

func (pionLogger) Trace(string)                {}
func (pionLogger) Tracef(string, ...any)       {}
func (l pionLogger) Debug(m string)            { l.print(m) }
func (l pionLogger) Debugf(f string, a ...any) { l.printf(f, a...) }
func (l pionLogger) Info(m string)             { l.print(m) }
func (l pionLogger) Infof(f string, a ...any)  { l.printf(f, a...) }
func (l pionLogger) Warn(m string)             { l.print(m) }
func (l pionLogger) Warnf(f string, a ...any)  { l.printf(f, a...) }
func (l pionLogger) Error(m string)            { l.print(m) }
func (l pionLogger) Errorf(f string, a ...any) { l.printf(f, a...) }
