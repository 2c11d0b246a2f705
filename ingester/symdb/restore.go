package symdb

import "fmt"

// Restore builds a tenant's symbols from tables saved from another Symbols
// (a head snapshot: Snapshot's slices, written and read back). It checks
// every reference between the tables, so that a restored table never
// resolves out of range, and rebuilds the maps that intern by value
// (strings, mappings, functions, locations, tree children). The maps keyed
// by KeyProfile's hashes start empty: their seeds are the process's, and
// Intern falls back to interning by value, which finds the restored ids, so
// a profile interned again after a restore gets the ids it had before.
func Restore(sn *Snapshot) (*Symbols, error) {
	if len(sn.Strings) == 0 || sn.Strings[0] != "" || len(sn.Mappings) == 0 || sn.Mappings[0] != (Mapping{}) ||
		len(sn.Functions) == 0 || sn.Functions[0] != (Function{}) || len(sn.Locations) == 0 || len(sn.Nodes) == 0 || sn.Nodes[0] != (Node{}) {
		return nil, fmt.Errorf("symbols: a table lacks its zero entry")
	}
	if l := sn.Locations[0]; l.Mapping != 0 || l.Address != 0 || l.IsFolded || len(l.Lines) != 0 {
		return nil, fmt.Errorf("symbols: a table lacks its zero entry")
	}
	s := &Symbols{
		strings:     sn.Strings,
		stringIDs:   make(map[string]uint32, len(sn.Strings)),
		mappings:    sn.Mappings,
		mappingIDs:  make(map[Mapping]uint32, len(sn.Mappings)),
		functions:   sn.Functions,
		functionIDs: make(map[Function]uint32, len(sn.Functions)),
		locations:   sn.Locations,
		locationIDs: make(map[uint64][]uint32, len(sn.Locations)),
		nodes:       sn.Nodes,
		children:    make(map[uint64]uint32, len(sn.Nodes)),
		stacks:      map[uint64]uint32{},
	}
	nstr := uint32(len(sn.Strings))
	for i, str := range sn.Strings {
		if _, dup := s.stringIDs[str]; dup {
			return nil, fmt.Errorf("symbols: string %d repeats an earlier one", i)
		}
		s.stringIDs[str] = uint32(i)
		s.bytes += int64(len(str)) + 16 + 40
	}
	for i, m := range sn.Mappings {
		if m.Filename >= nstr || m.BuildID >= nstr {
			return nil, fmt.Errorf("symbols: mapping %d refers to a string out of range", i)
		}
		if _, dup := s.mappingIDs[m]; dup {
			return nil, fmt.Errorf("symbols: mapping %d repeats an earlier one", i)
		}
		s.mappingIDs[m] = uint32(i)
		s.bytes += 2 * 48
	}
	for i, f := range sn.Functions {
		if f.Name >= nstr || f.SystemName >= nstr || f.Filename >= nstr {
			return nil, fmt.Errorf("symbols: function %d refers to a string out of range", i)
		}
		if _, dup := s.functionIDs[f]; dup {
			return nil, fmt.Errorf("symbols: function %d repeats an earlier one", i)
		}
		s.functionIDs[f] = uint32(i)
		s.bytes += 2 * 24
	}
	for i, l := range sn.Locations[1:] {
		if l.Mapping >= uint32(len(sn.Mappings)) {
			return nil, fmt.Errorf("symbols: location %d refers to mapping %d out of range", i+1, l.Mapping)
		}
		for _, ln := range l.Lines {
			if ln.Function >= uint32(len(sn.Functions)) {
				return nil, fmt.Errorf("symbols: location %d refers to function %d out of range", i+1, ln.Function)
			}
		}
		h := hashLocation(l.Mapping, l.Address, l.IsFolded, l.Lines)
		s.locationIDs[h] = append(s.locationIDs[h], uint32(i+1))
		s.bytes += 64 + 16*int64(len(l.Lines)) + 40
	}
	for i, n := range sn.Nodes[1:] {
		id := uint32(i + 1)
		// A parent before its child (insertNodes appends them so): the tree
		// has no cycle, and every stack id walks up to the root.
		if n.Parent >= id || n.Location >= uint32(len(sn.Locations)) {
			return nil, fmt.Errorf("symbols: stack node %d refers to parent %d or location %d out of range", id, n.Parent, n.Location)
		}
		key := uint64(n.Parent)<<32 | uint64(n.Location)
		if _, dup := s.children[key]; dup {
			return nil, fmt.Errorf("symbols: stack node %d repeats an earlier one", id)
		}
		s.children[key] = id
		s.bytes += 8 + 24
	}
	return s, nil
}
