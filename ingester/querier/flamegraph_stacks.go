package querier

import "github.com/hearth-dev/hearth/ingester/symdb"

// stackNodes maps the nodes of one source's stack-trace tree to name-tree
// nodes. Stacks share their prefixes in the symbol tree, so resolving a stack
// walks up only to the first node already mapped, and names each new frame
// once: the name tree comes out node for node as adding every stack's frames
// from the root (nameTree.add) makes it, without a lookup per frame.
type stackNodes struct {
	tree   *nameTree
	syms   *symdb.Snapshot
	mapped []int32 // symbol node → name node + 1; 0: not yet
	chain  []uint32
	fr     []string
}

func newStackNodes(tree *nameTree, syms *symdb.Snapshot) *stackNodes {
	return &stackNodes{tree: tree, syms: syms, mapped: make([]int32, len(syms.Nodes))}
}

// add adds value to stack st (a symbol tree node id).
func (s *stackNodes) add(st uint32, value int64) {
	t := s.tree
	n := s.node(st)
	t.nodes[n].self += value
	for ; n >= 0; n = t.nodes[n].parent {
		t.nodes[n].total += value
	}
}

// node returns the name-tree node of symbol node id, creating what is missing.
func (s *stackNodes) node(id uint32) int32 {
	s.chain = s.chain[:0]
	for steps := 0; id != 0 && s.mapped[id] == 0 && steps < len(s.syms.Nodes); steps++ {
		s.chain = append(s.chain, id)
		id = s.syms.Nodes[id].Parent
	}
	n := int32(0) // the root
	if id != 0 {
		n = s.mapped[id] - 1
	}
	var loc [1]uint32
	for i := len(s.chain) - 1; i >= 0; i-- {
		c := s.chain[i]
		loc[0] = s.syms.Nodes[c].Location
		s.fr = frames(s.fr[:0], s.syms, loc[:])
		for _, name := range s.fr {
			n = s.tree.child(n, name)
		}
		s.mapped[c] = n + 1
	}
	return n
}
