package symdb

import (
	"slices"
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

func keyedProfile() *googlev1.Profile {
	return &googlev1.Profile{
		StringTable: []string{"", "main", "work", "main.go", "/bin/app"},
		Mapping:     []*googlev1.Mapping{{Id: 1, Filename: 4}, {Id: 2}}, // mapping 2 is all zeros: tenant mapping 0
		Function:    []*googlev1.Function{{Id: 1, Name: 1, Filename: 3}, {Id: 2, Name: 2, Filename: 3}},
		Location: []*googlev1.Location{
			{Id: 1, MappingId: 1, Address: 0x10, Line: []*googlev1.Line{{FunctionId: 1, Line: 10}}},
			{Id: 2, MappingId: 1, Address: 0x20, Line: []*googlev1.Line{{FunctionId: 2, Line: 20}}},
			{Id: 3, MappingId: 1, Address: 0x20, Line: []*googlev1.Line{{FunctionId: 2, Line: 20}}}, // same as 2
			{Id: 4, Address: 0x30},
			{Id: 5, MappingId: 2, Address: 0x30}, // the same location as 4 in the tenant's tables
		},
	}
}

func internStacks(t *testing.T, s *Symbols, p *googlev1.Profile, stacks ...[]uint64) []uint32 {
	t.Helper()
	k, err := KeyProfile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stacks {
		if _, err := k.AddStack(st); err != nil {
			t.Fatal(err)
		}
	}
	s.Lock()
	defer s.Unlock()
	return s.Intern(k, nil)
}

// Equal stacks by value get one tenant id, whether their pprof ids differ or
// their keys do (a zero mapping and no mapping); a second push of the same
// profile adds nothing; the tables hold what AddProfile/StackID would.
func TestInternByValue(t *testing.T) {
	s := New()
	ids := internStacks(t, s, keyedProfile(), []uint64{2, 1}, []uint64{3, 1}, []uint64{4, 1}, []uint64{5, 1}, []uint64{1})
	if ids[0] != ids[1] || ids[2] != ids[3] || ids[0] == ids[2] || ids[4] == ids[0] || ids[4] == ids[2] {
		t.Fatalf("tenant stacks %v", ids)
	}
	bytes := s.Bytes()
	again := internStacks(t, s, keyedProfile(), []uint64{2, 1}, []uint64{3, 1}, []uint64{4, 1}, []uint64{5, 1}, []uint64{1})
	if !slices.Equal(again, ids) || s.Bytes() != bytes {
		t.Fatalf("second push: stacks %v (first %v), %d bytes (first %d)", again, ids, s.Bytes(), bytes)
	}

	old := New()
	old.Lock()
	m, err := old.AddProfile(keyedProfile())
	if err != nil {
		t.Fatal(err)
	}
	var oldIDs []uint32
	for _, st := range [][]uint64{{2, 1}, {3, 1}, {4, 1}, {5, 1}, {1}} {
		id, err := m.StackID(st)
		if err != nil {
			t.Fatal(err)
		}
		oldIDs = append(oldIDs, id)
	}
	old.Unlock()
	sn, on := s.Snapshot(), old.Snapshot()
	// String ids may differ (Intern interns only the strings its symbols use).
	if !slices.Equal(oldIDs, ids) || !slices.Equal(sn.Nodes, on.Nodes) || len(sn.Locations) != len(on.Locations) ||
		len(sn.Functions) != len(on.Functions) || len(sn.Mappings) != len(on.Mappings) {
		t.Fatalf("Intern: stacks %v, %d nodes, %d locations, %d functions, %d mappings; AddProfile: %v, %d, %d, %d, %d",
			ids, len(sn.Nodes), len(sn.Locations), len(sn.Functions), len(sn.Mappings), oldIDs, len(on.Nodes), len(on.Locations), len(on.Functions), len(on.Mappings))
	}
	for i := range sn.Mappings {
		a, b := sn.Mappings[i], on.Mappings[i]
		if sn.Strings[a.Filename] != on.Strings[b.Filename] || a.MemoryStart != b.MemoryStart {
			t.Fatalf("mapping %d: %+v, AddProfile %+v", i, a, b)
		}
	}
	for i := range sn.Locations {
		a, b := sn.Locations[i], on.Locations[i]
		if a.Mapping != b.Mapping || a.Address != b.Address || !slices.Equal(a.Lines, b.Lines) {
			t.Fatalf("location %d: %+v, AddProfile %+v", i, a, b)
		}
	}
	for i := range sn.Functions {
		a, b := sn.Functions[i], on.Functions[i]
		if sn.Strings[a.Name] != on.Strings[b.Name] || sn.Strings[a.Filename] != on.Strings[b.Filename] || sn.Strings[a.SystemName] != on.Strings[b.SystemName] {
			t.Fatalf("function %d: %+v, AddProfile %+v", i, a, b)
		}
	}
}

func TestKeyProfileRefusesWhatAddProfileRefuses(t *testing.T) {
	for name, change := range map[string]func(p *googlev1.Profile){
		"function name":    func(p *googlev1.Profile) { p.Function[0].Name = 99 },
		"mapping filename": func(p *googlev1.Profile) { p.Mapping[0].Filename = -1 },
		"mapping":          func(p *googlev1.Profile) { p.Location[0].MappingId = 9 },
		"function":         func(p *googlev1.Profile) { p.Location[0].Line[0].FunctionId = 9 },
		"location id 0":    func(p *googlev1.Profile) { p.Location[0].Id = 0 },
		"location twice":   func(p *googlev1.Profile) { p.Location[1].Id = 1 },
	} {
		p := keyedProfile()
		change(p)
		_, err := KeyProfile(p)
		s := New()
		s.Lock()
		_, oldErr := s.AddProfile(p)
		s.Unlock()
		if err == nil || oldErr == nil || err.Error() != oldErr.Error() {
			t.Errorf("%s: KeyProfile %v, AddProfile %v", name, err, oldErr)
		}
	}
	k, err := KeyProfile(keyedProfile())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.AddStack([]uint64{1, 7}); err == nil {
		t.Fatal("a stack with an unknown location was keyed")
	}
	if n, err := k.AddStack([]uint64{1}); err != nil || n != 0 || k.Stacks() != 1 {
		t.Fatalf("after a refused stack: %d, %v, %d stacks", n, err, k.Stacks())
	}
}

// Keys whose first halves collide are told apart by their second halves.
func TestKeyMapCollision(t *testing.T) {
	var m keyMap
	m.put(Key{1, 2}, 10)
	if _, ok := m.get(Key{1, 3}); ok {
		t.Fatal("found a key never put")
	}
	m.put(Key{1, 3}, 11)
	for k, want := range map[Key]uint32{{1, 2}: 10, {1, 3}: 11} {
		if id, ok := m.get(k); !ok || id != want {
			t.Fatalf("%v: %d %v, want %d", k, id, ok, want)
		}
	}
}

// TestKeyedReuse keys profiles of different shapes one after another into
// one Keyed (as the pool hands it out after Release): each gets the keys,
// indexes and stacks of a fresh Keyed, nothing left over from the one
// before (dense and sparse ids, more and fewer locations, a refused one).
func TestKeyedReuse(t *testing.T) {
	sparse := keyedProfile()
	for _, l := range sparse.Location {
		l.Id += 1 << 40
	}
	small := keyedProfile()
	small.Location = small.Location[:2]
	bad := keyedProfile()
	bad.Location[0].MappingId = 9
	stacksOf := func(p *googlev1.Profile) [][]uint64 {
		var out [][]uint64
		for i := range p.Location {
			out = append(out, []uint64{p.Location[i].Id, p.Location[0].Id})
		}
		return out
	}
	reused := new(Keyed)
	for round, p := range []*googlev1.Profile{keyedProfile(), sparse, small, bad, keyedProfile(), sparse, small} {
		fresh, ferr := keyProfile(new(Keyed), p)
		got, err := keyProfile(reused, p)
		if (err == nil) != (ferr == nil) {
			t.Fatalf("profile %d: err %v, fresh %v", round, err, ferr)
		}
		if err != nil {
			continue
		}
		for _, st := range stacksOf(p) {
			a, errA := fresh.AddStack(st)
			b, errB := got.AddStack(st)
			if a != b || (errA == nil) != (errB == nil) {
				t.Fatalf("profile %d stack %v: %d %v, fresh %d %v", round, st, b, errB, a, errA)
			}
		}
		if !slices.Equal(got.locKeys, fresh.locKeys) || !slices.Equal(got.stackKeys, fresh.stackKeys) ||
			!slices.Equal(got.frames, fresh.frames) || !slices.Equal(got.frameOff, fresh.frameOff) {
			t.Fatalf("profile %d: keyed differently from a fresh Keyed", round)
		}
		if _, err := got.AddStack([]uint64{1 << 50}); err == nil {
			t.Fatalf("profile %d: a stack with an unknown location was keyed", round)
		}
		s1, s2 := New(), New()
		s1.Lock()
		s2.Lock()
		if !slices.Equal(s1.Intern(got, nil), s2.Intern(fresh, nil)) {
			t.Fatalf("profile %d: interned differently", round)
		}
		s1.Unlock()
		s2.Unlock()
		reused.p = nil // as Release leaves it
	}
}
