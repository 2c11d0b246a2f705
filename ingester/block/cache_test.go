package block

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/hearth-dev/hearth/ingester/symdb"
)

// table is a symbol table of about n*16+n bytes (strings of one byte).
func table(n int) *symdb.Snapshot {
	sn := &symdb.Snapshot{}
	for i := 0; i < n; i++ {
		sn.Strings = append(sn.Strings, fmt.Sprint(i%10))
	}
	return sn
}

// TestSymbolsOverBudgetSharedWhileHeld (issue 21 finding 4): a symbol table
// over the cache budget was downloaded again by every query. It is shared
// while a query holds it, evicted tables too, and downloaded again only
// once nobody holds it (the memory stays bounded by the budget plus the
// tables in use).
func TestSymbolsOverBudgetSharedWhileHeld(t *testing.T) {
	ctx := context.Background()
	c := NewSymbolCache(snapshotBytes(table(100)) + 1) // one table of 100 fits, one of 1000 does not
	loads := map[string]*atomic.Int64{"big": {}, "a": {}, "b": {}}
	loader := func(key string, n int) func(context.Context) (*symdb.Snapshot, error) {
		return func(context.Context) (*symdb.Snapshot, error) { loads[key].Add(1); return table(n), nil }
	}
	big, err := c.get(ctx, "big", loader("big", 1000))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // later queries while the first still holds it
		again, err := c.get(ctx, "big", loader("big", 1000))
		if err != nil || again != big {
			t.Fatalf("query %d: another copy (%v)", i, err)
		}
	}
	if n := loads["big"].Load(); n != 1 {
		t.Fatalf("an oversized table held by a query was downloaded %d times", n)
	}
	if _, _, used := c.Stats(); used != 0 {
		t.Fatalf("the oversized table counts %d bytes against the budget", used)
	}
	// Evicted while held: shared too.
	a, _ := c.get(ctx, "a", loader("a", 100))
	if _, err := c.get(ctx, "b", loader("b", 100)); err != nil { // evicts a
		t.Fatal(err)
	}
	if again, _ := c.get(ctx, "a", loader("a", 100)); again != a || loads["a"].Load() != 1 {
		t.Fatalf("an evicted table still in use was downloaded again (%d loads)", loads["a"].Load())
	}
	runtime.KeepAlive(big)
	runtime.KeepAlive(a)
	// Nobody holds it any more: the next query downloads it again.
	big, a = nil, nil
	runtime.GC()
	runtime.GC()
	if _, err := c.get(ctx, "big", loader("big", 1000)); err != nil {
		t.Fatal(err)
	}
	if n := loads["big"].Load(); n != 2 {
		t.Fatalf("a table nobody holds was not downloaded again: %d loads", n)
	}
}
