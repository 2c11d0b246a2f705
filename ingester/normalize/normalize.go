// Package normalize holds the rewrites Grafana Pyroscope v1.18 applies to
// profiles and series labels on ingestion, so that a client switching from
// Pyroscope to Hearth sees the same flame graphs, label names and profile
// types. Each function is pure (it changes only the profile or labels it is
// given), says which client it is for, and reports whether it changed
// anything, so that the caller re-encodes a profile only when needed.
//
// The rewrites that drop or guess data (the Go stack repair and type
// parameters, the scripting function names) can be turned off with flags;
// their defaults are Pyroscope's behaviour.
package normalize

import (
	"errors"
	"flag"
	"fmt"
)

// Config selects the rewrites that change what a profile says. Their
// defaults are Pyroscope's behaviour; turning one off keeps more of what the
// client sent than Pyroscope does.
type Config struct {
	// GoStackRepair appends the missing root frames to Go heap and CPU stacks
	// the Go runtime truncated (32 frames for heap, 64 for CPU), guessed from
	// the other stacks of the profile, as Pyroscope's FixGoProfile does.
	GoStackRepair bool `yaml:"go_stack_repair"`
	// GoTypeParameters removes [go.shape.*] type parameters from Go function
	// names (Go 1.21+ names any instance at every call site).
	GoTypeParameters bool `yaml:"go_type_parameters"`
	// ScriptingFunctionNames prefixes function names with their file name for
	// /ingest profiles from pyspy, rbspy and "scripting" spies.
	ScriptingFunctionNames bool `yaml:"scripting_function_names"`
	// SanitizeInvalidUTF8 stores invalid UTF-8 in a profile's strings as
	// U+FFFD instead of refusing the profile (Pyroscope refuses it: 400 on
	// push.v1, 422 on /ingest).
	SanitizeInvalidUTF8 bool `yaml:"sanitize_invalid_utf8"`
}

// Default is Pyroscope's behaviour.
func Default() Config {
	return Config{GoStackRepair: true, GoTypeParameters: true, ScriptingFunctionNames: true}
}

// RegisterFlags registers the flags with Pyroscope's behaviour as defaults.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	d := Default()
	f.BoolVar(&c.GoStackRepair, "normalize.go-stack-repair", d.GoStackRepair, "Repair Go heap and CPU stacks the Go runtime truncated (at 32 and 64 frames) from the other stacks of the profile, as Pyroscope does (false: store them truncated, as sent).")
	f.BoolVar(&c.GoTypeParameters, "normalize.go-type-parameters", d.GoTypeParameters, "Remove [go.shape.*] type parameters from Go function names, as Pyroscope does (false: keep the names as sent).")
	f.BoolVar(&c.ScriptingFunctionNames, "normalize.scripting-function-names", d.ScriptingFunctionNames, "Prefix function names with their file name in /ingest profiles from pyspy, rbspy and scripting spies, as Pyroscope does (false: keep the names as sent).")
	f.BoolVar(&c.SanitizeInvalidUTF8, "normalize.sanitize-invalid-utf8", d.SanitizeInvalidUTF8, "Store invalid UTF-8 in profile strings as U+FFFD instead of refusing the profile (Pyroscope refuses it: 400 on push.v1, 422 on /ingest).")
}

// Error is a profile or label set Pyroscope refuses: the push path answers
// it as a client error.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func errorf(format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...)}
}

// IsError reports whether err is (or wraps) an *Error.
func IsError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
