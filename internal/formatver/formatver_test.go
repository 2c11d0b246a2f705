package formatver

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestCheck(t *testing.T) {
	f := Format{Name: "test_format", Oldest: 1, Writes: 2}
	for _, v := range []int{1, 2} {
		if err := f.Check("x", v); err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
	}
	before := Refused(f)
	err := f.Check("/data/x.bin", 3)
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("version 3: %v", err)
	}
	for _, want := range []string{"/data/x.bin", "test_format", "version 3", "versions 1 to 2", "newer Hearth release", "do not delete"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if got := Refused(f) - before; got != 1 {
		t.Fatalf("counted %v refusals, want 1", got)
	}
	if err := f.Check("y", 0); err == nil || !strings.Contains(err.Error(), "too old") {
		t.Fatalf("version 0: %v", err)
	}
}

func TestRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	Register(reg)
	Register(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "hearth_unsupported_format_version_total" || len(mfs[0].GetMetric()) < len(All) {
		t.Fatalf("gathered %v", mfs)
	}
}
