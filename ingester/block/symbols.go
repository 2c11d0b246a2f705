package block

import (
	"encoding/binary"
	"unsafe"

	"github.com/hearth-dev/hearth/ingester/symdb"
)

// symbols.bin payload (framed, see codec.go). Every table keeps the head's
// convention: id 0 is the zero value and is not stored, so a table of n
// entries stores n-1 of them after its count n. Tables in order, each column
// after column:
//
//	strings:   n | len[1..n) | bytes of strings[1..n) concatenated
//	mappings:  n | memory_start | memory_limit | file_offset | filename | build_id | flags
//	functions: n | name | system_name | filename | start_line (zig-zag)
//	locations: n | mapping | address | lines<<1|folded | then for every line: function, line (zig-zag)
//	nodes:     n | id-parent (≥1, so parents precede children) | location
//
// Every reference is checked against its table on decode, so a decoded
// Snapshot never indexes out of range.

const symbolsMagic = "HSYM"

// maxSymbolsRaw bounds a symbols payload (decompressed).
const maxSymbolsRaw = 1 << 30

func encodeSymbols(sn *symdb.Snapshot) []byte {
	var b []byte
	u := func(v uint64) { b = binary.AppendUvarint(b, v) }
	z := func(v int64) { b = binary.AppendVarint(b, v) }

	u(uint64(len(sn.Strings)))
	for _, s := range sn.Strings[1:] {
		u(uint64(len(s)))
	}
	for _, s := range sn.Strings[1:] {
		b = append(b, s...)
	}

	ms := sn.Mappings[1:]
	u(uint64(len(sn.Mappings)))
	for _, m := range ms {
		u(m.MemoryStart)
	}
	for _, m := range ms {
		u(m.MemoryLimit)
	}
	for _, m := range ms {
		u(m.FileOffset)
	}
	for _, m := range ms {
		u(uint64(m.Filename))
	}
	for _, m := range ms {
		u(uint64(m.BuildID))
	}
	for _, m := range ms {
		u(b2u(m.HasFunctions) | b2u(m.HasFilenames)<<1 | b2u(m.HasLineNumbers)<<2 | b2u(m.HasInlineFrames)<<3)
	}

	fs := sn.Functions[1:]
	u(uint64(len(sn.Functions)))
	for _, f := range fs {
		u(uint64(f.Name))
	}
	for _, f := range fs {
		u(uint64(f.SystemName))
	}
	for _, f := range fs {
		u(uint64(f.Filename))
	}
	for _, f := range fs {
		z(f.StartLine)
	}

	ls := sn.Locations[1:]
	u(uint64(len(sn.Locations)))
	for _, l := range ls {
		u(uint64(l.Mapping))
	}
	for _, l := range ls {
		u(l.Address)
	}
	for _, l := range ls {
		u(uint64(len(l.Lines))<<1 | b2u(l.IsFolded))
	}
	for _, l := range ls {
		for _, ln := range l.Lines {
			u(uint64(ln.Function))
		}
	}
	for _, l := range ls {
		for _, ln := range l.Lines {
			z(ln.Line)
		}
	}

	u(uint64(len(sn.Nodes)))
	for i, n := range sn.Nodes[1:] {
		u(uint64(i+1) - uint64(n.Parent))
	}
	for _, n := range sn.Nodes[1:] {
		u(uint64(n.Location))
	}
	return frame(symbolsMagic, b)
}

func b2u(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

// DecodeSymbols decodes symbols.bin, checking every reference.
func DecodeSymbols(b []byte) (*symdb.Snapshot, error) {
	return decodeSymbols(b, maxSymbolsRaw)
}

func decodeSymbols(b []byte, maxRaw int) (*symdb.Snapshot, error) {
	payload, err := unframe(symbolsMagic, b, maxRaw)
	if err != nil {
		return nil, err
	}
	d := &dec{B: payload, Base: ErrCorrupt}
	sn := &symdb.Snapshot{}
	table := func(what string, minBytes int) int {
		v := d.Uvarint(what)
		switch {
		case d.Err != nil:
			return 0
		case v == 0:
			d.Failf("%s: empty table (entry 0 is implicit, the count includes it)", what)
			return 0
		case v-1 > uint64(len(d.B)/minBytes):
			d.Failf("%s: %d entries exceed what %d bytes can hold", what, v, len(d.B))
			return 0
		}
		return int(v)
	}

	ns := table("strings", 1)
	sn.Strings = make([]string, ns)
	if d.Err == nil {
		lens := make([]int, ns)
		total := 0
		for i := 1; i < ns; i++ {
			l := d.Uvarint("string length")
			if l > uint64(len(d.B)) {
				d.Fail("string length")
				break
			}
			lens[i] = int(l)
			total += int(l)
		}
		if all := d.Bytes(total, "string bytes"); d.Err == nil {
			s := string(all)
			off := 0
			for i := 1; i < ns; i++ {
				sn.Strings[i] = s[off : off+lens[i]]
				off += lens[i]
			}
		}
	}
	nstr := uint64(max(ns, 0))

	nm := table("mappings", 6)
	sn.Mappings = make([]symdb.Mapping, nm)
	ms := sn.Mappings[min(1, nm):]
	for i := range ms {
		ms[i].MemoryStart = d.Uvarint("mapping memory start")
	}
	for i := range ms {
		ms[i].MemoryLimit = d.Uvarint("mapping memory limit")
	}
	for i := range ms {
		ms[i].FileOffset = d.Uvarint("mapping file offset")
	}
	for i := range ms {
		ms[i].Filename = d.U32("mapping filename", nstr)
	}
	for i := range ms {
		ms[i].BuildID = d.U32("mapping build id", nstr)
	}
	for i := range ms {
		f := d.U32("mapping flags", 16)
		ms[i].HasFunctions, ms[i].HasFilenames = f&1 != 0, f&2 != 0
		ms[i].HasLineNumbers, ms[i].HasInlineFrames = f&4 != 0, f&8 != 0
	}

	nf := table("functions", 4)
	sn.Functions = make([]symdb.Function, nf)
	fs := sn.Functions[min(1, nf):]
	for i := range fs {
		fs[i].Name = d.U32("function name", nstr)
	}
	for i := range fs {
		fs[i].SystemName = d.U32("function system name", nstr)
	}
	for i := range fs {
		fs[i].Filename = d.U32("function filename", nstr)
	}
	for i := range fs {
		fs[i].StartLine = d.Varint("function start line")
	}

	nl := table("locations", 3)
	sn.Locations = make([]symdb.Location, nl)
	ls := sn.Locations[min(1, nl):]
	for i := range ls {
		ls[i].Mapping = d.U32("location mapping", uint64(max(nm, 0)))
	}
	for i := range ls {
		ls[i].Address = d.Uvarint("location address")
	}
	nlines := 0
	for i := range ls {
		v := d.Uvarint("location lines")
		if v>>1 > uint64(len(d.B)) {
			d.Fail("location line count")
			break
		}
		ls[i].IsFolded = v&1 != 0
		nlines += int(v >> 1)
		ls[i].Lines = make([]symdb.Line, 0, int(v>>1)) // length set below
	}
	if d.Err == nil && nlines > len(d.B)/2 {
		d.Fail("location lines")
	}
	if d.Err == nil {
		lines := make([]symdb.Line, nlines)
		off := 0
		for i := range ls {
			n := cap(ls[i].Lines)
			ls[i].Lines = lines[off : off+n : off+n]
			off += n
		}
		for i := range lines {
			lines[i].Function = d.U32("line function", uint64(max(nf, 0)))
		}
		for i := range lines {
			lines[i].Line = d.Varint("line number")
		}
	}

	nn := table("nodes", 2)
	sn.Nodes = make([]symdb.Node, nn)
	nodes := sn.Nodes[min(1, nn):]
	for i := range nodes {
		id := uint64(i + 1)
		delta := d.Uvarint("node parent")
		if d.Err == nil && (delta == 0 || delta > id) {
			d.Failf("node %d: parent delta %d", id, delta)
		}
		nodes[i].Parent = uint32(id - delta)
	}
	for i := range nodes {
		nodes[i].Location = d.U32("node location", uint64(max(nl, 0)))
	}
	if err := d.Done("symbols"); err != nil {
		return nil, err
	}
	return sn, nil
}

// snapshotBytes approximates the memory a decoded snapshot holds.
func snapshotBytes(sn *symdb.Snapshot) int64 {
	n := int64(len(sn.Strings)) * int64(unsafe.Sizeof(""))
	for _, s := range sn.Strings {
		n += int64(len(s))
	}
	n += int64(len(sn.Mappings)) * int64(unsafe.Sizeof(symdb.Mapping{}))
	n += int64(len(sn.Functions)) * int64(unsafe.Sizeof(symdb.Function{}))
	n += int64(len(sn.Locations)) * int64(unsafe.Sizeof(symdb.Location{}))
	for _, l := range sn.Locations {
		n += int64(len(l.Lines)) * int64(unsafe.Sizeof(symdb.Line{}))
	}
	n += int64(len(sn.Nodes)) * int64(unsafe.Sizeof(symdb.Node{}))
	return n
}

// pruner keeps only the symbols the stacks of a block reach.
type pruner struct {
	sn       *symdb.Snapshot
	nodeUsed []bool
}

func newPruner(sn *symdb.Snapshot) *pruner {
	return &pruner{sn: sn, nodeUsed: make([]bool, len(sn.Nodes))}
}

func (p *pruner) useStack(id uint32) { p.nodeUsed[id] = true }

// prune returns the pruned snapshot and the node id remapping (nil when nothing was pruned).
// Remapping keeps the relative order of every table, so sorted stack ids stay sorted.
func (p *pruner) prune() (*symdb.Snapshot, []uint32) {
	sn := p.sn
	nodeUsed := p.nodeUsed
	nodeUsed[0] = true
	// Parents precede children: one pass from the leaves marks every ancestor.
	for i := len(sn.Nodes) - 1; i > 0; i-- {
		if nodeUsed[i] {
			nodeUsed[sn.Nodes[i].Parent] = true
		}
	}
	locUsed := make([]bool, len(sn.Locations))
	locUsed[0] = true
	for i, n := range sn.Nodes {
		if nodeUsed[i] {
			locUsed[n.Location] = true
		}
	}
	fnUsed := make([]bool, len(sn.Functions))
	mapUsed := make([]bool, len(sn.Mappings))
	fnUsed[0], mapUsed[0] = true, true
	for i, l := range sn.Locations {
		if !locUsed[i] {
			continue
		}
		mapUsed[l.Mapping] = true
		for _, ln := range l.Lines {
			fnUsed[ln.Function] = true
		}
	}
	strUsed := make([]bool, len(sn.Strings))
	strUsed[0] = true
	for i, f := range sn.Functions {
		if fnUsed[i] {
			strUsed[f.Name], strUsed[f.SystemName], strUsed[f.Filename] = true, true, true
		}
	}
	for i, m := range sn.Mappings {
		if mapUsed[i] {
			strUsed[m.Filename], strUsed[m.BuildID] = true, true
		}
	}
	if allTrue(nodeUsed) && allTrue(locUsed) && allTrue(fnUsed) && allTrue(mapUsed) && allTrue(strUsed) {
		return sn, nil
	}
	strMap, fnMap, mapMap, locMap, nodeMap := remap(strUsed), remap(fnUsed), remap(mapUsed), remap(locUsed), remap(nodeUsed)
	out := &symdb.Snapshot{}
	for i, s := range sn.Strings {
		if strUsed[i] {
			out.Strings = append(out.Strings, s)
		}
	}
	for i, m := range sn.Mappings {
		if mapUsed[i] {
			m.Filename, m.BuildID = strMap[m.Filename], strMap[m.BuildID]
			out.Mappings = append(out.Mappings, m)
		}
	}
	for i, f := range sn.Functions {
		if fnUsed[i] {
			f.Name, f.SystemName, f.Filename = strMap[f.Name], strMap[f.SystemName], strMap[f.Filename]
			out.Functions = append(out.Functions, f)
		}
	}
	for i, l := range sn.Locations {
		if locUsed[i] {
			lines := make([]symdb.Line, len(l.Lines))
			for j, ln := range l.Lines {
				lines[j] = symdb.Line{Function: fnMap[ln.Function], Line: ln.Line}
			}
			out.Locations = append(out.Locations, symdb.Location{Mapping: mapMap[l.Mapping], Address: l.Address, IsFolded: l.IsFolded, Lines: lines})
		}
	}
	for i, n := range sn.Nodes {
		if nodeUsed[i] {
			out.Nodes = append(out.Nodes, symdb.Node{Parent: nodeMap[n.Parent], Location: locMap[n.Location]})
		}
	}
	return out, nodeMap
}

func allTrue(v []bool) bool {
	for _, b := range v {
		if !b {
			return false
		}
	}
	return true
}

func remap(used []bool) []uint32 {
	m := make([]uint32, len(used))
	next := uint32(0)
	for i, u := range used {
		if u {
			m[i] = next
			next++
		}
	}
	return m
}

// The symbols.bin codec is also how ingester/remote ships head selections
// between ingesters.

// EncodeSymbols encodes a snapshot as symbols.bin (framed, compressed, checksummed).
func EncodeSymbols(sn *symdb.Snapshot) []byte { return encodeSymbols(sn) }

// DecodeSymbolsLimit is DecodeSymbols refusing payloads larger than maxRaw bytes decompressed.
func DecodeSymbolsLimit(b []byte, maxRaw int) (*symdb.Snapshot, error) {
	return decodeSymbols(b, maxRaw)
}

// PruneSymbols keeps only the symbols the given stack trace ids reach. It
// returns the pruned snapshot and the node id remapping (old id → new id),
// nil when nothing was pruned (then sn itself is returned). The remapping
// keeps the relative order of ids, so sorted stack ids stay sorted.
func PruneSymbols(sn *symdb.Snapshot, stacks func(use func(id uint32))) (*symdb.Snapshot, []uint32) {
	p := newPruner(sn)
	stacks(func(id uint32) {
		if int(id) < len(p.nodeUsed) {
			p.useStack(id)
		}
	})
	return p.prune()
}
