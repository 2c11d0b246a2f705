package symdb

import (
	"slices"
	"testing"
)

// TestRestoreInternsByValue: tables restored from a snapshot give a profile
// interned again the ids it had (the keyed maps start empty: Intern finds
// the locations and stacks by value), and add nothing; new symbols get the
// next ids, as in the original.
func TestRestoreInternsByValue(t *testing.T) {
	orig := New()
	stacks := [][]uint64{{1, 2}, {2, 1}, {4}, {3, 5, 1}}
	want := internStacks(t, orig, keyedProfile(), stacks...)
	sn := orig.Snapshot()
	r, err := Restore(&Snapshot{Strings: slices.Clone(sn.Strings), Mappings: slices.Clone(sn.Mappings), Functions: slices.Clone(sn.Functions),
		Locations: slices.Clone(sn.Locations), Nodes: slices.Clone(sn.Nodes)})
	if err != nil {
		t.Fatal(err)
	}
	if got := internStacks(t, r, keyedProfile(), stacks...); !slices.Equal(got, want) {
		t.Fatalf("stack ids after the restore %v, want %v", got, want)
	}
	rs := r.Snapshot()
	if len(rs.Strings) != len(sn.Strings) || len(rs.Locations) != len(sn.Locations) || len(rs.Nodes) != len(sn.Nodes) ||
		len(rs.Mappings) != len(sn.Mappings) || len(rs.Functions) != len(sn.Functions) {
		t.Fatal("interning the same profile after the restore added symbols")
	}
	// A new stack: the same id in both.
	a := internStacks(t, orig, keyedProfile(), []uint64{5, 4, 2})
	b := internStacks(t, r, keyedProfile(), []uint64{5, 4, 2})
	if !slices.Equal(a, b) {
		t.Fatalf("a new stack: %v after the restore, %v in the original", b, a)
	}
}

// TestRestoreRefusesBadReferences: a reference out of range or a cycle in
// the stack tree is an error, never a table that panics later.
func TestRestoreRefusesBadReferences(t *testing.T) {
	s := New()
	internStacks(t, s, keyedProfile(), []uint64{1, 2})
	good := func() *Snapshot {
		sn := s.Snapshot()
		return &Snapshot{Strings: slices.Clone(sn.Strings), Mappings: slices.Clone(sn.Mappings), Functions: slices.Clone(sn.Functions),
			Locations: slices.Clone(sn.Locations), Nodes: slices.Clone(sn.Nodes)}
	}
	if _, err := Restore(good()); err != nil {
		t.Fatal(err)
	}
	for name, spoil := range map[string]func(*Snapshot){
		"no zero string":       func(sn *Snapshot) { sn.Strings[0] = "x" },
		"mapping string":       func(sn *Snapshot) { sn.Mappings[1].Filename = 99 },
		"function string":      func(sn *Snapshot) { sn.Functions[1].Name = 99 },
		"location mapping":     func(sn *Snapshot) { sn.Locations[1].Mapping = 99 },
		"location function":    func(sn *Snapshot) { sn.Locations[1].Lines = []Line{{Function: 99}} },
		"node location":        func(sn *Snapshot) { sn.Nodes[1].Location = 99 },
		"node parent after it": func(sn *Snapshot) { sn.Nodes[1].Parent = 2 },
		"duplicate string":     func(sn *Snapshot) { sn.Strings = append(sn.Strings, sn.Strings[1]) },
	} {
		sn := good()
		spoil(sn)
		if _, err := Restore(sn); err == nil {
			t.Errorf("%s: restored without error", name)
		}
	}
}
