package faultbucket

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/thanos-io/objstore"
)

func TestFaults(t *testing.T) {
	ctx := context.Background()
	inner := objstore.NewInMemBucket()
	body := bytes.Repeat([]byte("0123456789"), 100)
	if err := inner.Upload(ctx, "a/obj", bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	b := Wrap(inner, Config{Seed: 1})

	b.SetHook(func(op Op, name string) Fault { return Error })
	if _, err := b.Get(ctx, "a/obj"); !errors.Is(err, ErrInjected) || b.IsObjNotFoundErr(err) {
		t.Fatalf("error fault: %v", err)
	}
	b.SetHook(func(op Op, name string) Fault { return CutBody })
	rc, err := b.GetRange(ctx, "a/obj", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if !errors.Is(err, ErrInjected) || len(got) >= len(body) {
		t.Fatalf("cut body: %d bytes, %v", len(got), err)
	}
	b.SetHook(func(op Op, name string) Fault { return LandedError })
	if err := b.Upload(ctx, "a/new", strings.NewReader("x")); !errors.Is(err, ErrInjected) {
		t.Fatalf("landed error: %v", err)
	}
	if ok, _ := inner.Exists(ctx, "a/new"); !ok {
		t.Fatal("a landed upload must be in the bucket")
	}
	b.SetHook(nil)
	if _, err := b.Get(ctx, "a/none"); !b.IsObjNotFoundErr(err) {
		t.Fatalf("not found passes through: %v", err)
	}

	// Seeded rates: the same seed gives the same faults.
	count := func() int64 {
		fb := Wrap(inner, Config{Seed: 7, ErrorRate: 0.2, CutRate: 0.2})
		for i := 0; i < 200; i++ {
			if rc, err := fb.Get(ctx, "a/obj"); err == nil {
				_, _ = io.Copy(io.Discard, rc)
				rc.Close()
			}
		}
		return fb.Injected()
	}
	n1, n2 := count(), count()
	if n1 != n2 || n1 < 40 || n1 > 120 {
		t.Fatalf("seeded faults: %d and %d of 200 at 40%%", n1, n2)
	}
	b = Wrap(inner, Config{Seed: 7, ErrorRate: 1})
	b.SetEnabled(false)
	if _, err := b.Get(ctx, "a/obj"); err != nil {
		t.Fatalf("disabled: %v", err)
	}
}
