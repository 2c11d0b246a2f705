// Package kitlog adapts log/slog to the go-kit logger that dskit and
// memberlist log through.
package kitlog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// kitLogger adapts a *slog.Logger to the go-kit logger dskit and memberlist
// log through: the "level" key picks the slog level, "msg" the message, and
// every other pair becomes an attribute.
type kitLogger struct{ l *slog.Logger }

// New adapts l (nil: discard) to a go-kit logger.
func New(l *slog.Logger) log.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return kitLogger{l: l}
}

func (k kitLogger) Log(keyvals ...any) error {
	lvl := slog.LevelInfo
	msg := ""
	attrs := make([]any, 0, len(keyvals))
	for i := 0; i < len(keyvals); i += 2 {
		key := fmt.Sprint(keyvals[i])
		var val any = "(MISSING)"
		if i+1 < len(keyvals) {
			val = keyvals[i+1]
		}
		switch key {
		case "level":
			lvl = slogLevel(val)
			continue
		case "msg":
			if msg == "" {
				msg = fmt.Sprint(val)
				continue
			}
		}
		if err, ok := val.(error); ok {
			val = err.Error()
		}
		attrs = append(attrs, slog.Any(key, val))
	}
	k.l.Log(context.Background(), lvl, msg, attrs...)
	return nil
}

func slogLevel(v any) slog.Level {
	s := fmt.Sprint(v)
	if lv, ok := v.(level.Value); ok {
		s = lv.String()
	}
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}
