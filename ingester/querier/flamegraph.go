package querier

import (
	"encoding/binary"
	"sort"

	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
)

// DefaultMaxNodes bounds a flame graph when the request does not say.
const DefaultMaxNodes = 8192

// otherName names the node that stands for the children cut by max_nodes.
const otherName = "other"

// nameTree aggregates stacks by function name, the shape a flame graph shows.
// A node carries two values: the one every query fills, and the right-hand
// side of a diff.
type nameTree struct {
	names   []string
	nameIDs map[string]int32
	nodes   []nameNode // 0 is the root ("total")
	kids    map[uint64]int32
}

type nameNode struct {
	parent        int32
	name          int32
	total, self   int64
	rtotal, rself int64 // the right side of a diff
	children      []int32
}

func newNameTree() *nameTree {
	return &nameTree{names: []string{"total"}, nameIDs: map[string]int32{"total": 0}, nodes: []nameNode{{parent: -1}}, kids: map[uint64]int32{}}
}

func (t *nameTree) child(parent int32, name string) int32 {
	nid, ok := t.nameIDs[name]
	if !ok {
		nid = int32(len(t.names))
		t.names = append(t.names, name)
		t.nameIDs[name] = nid
	}
	key := uint64(uint32(parent))<<32 | uint64(uint32(nid))
	if c, ok := t.kids[key]; ok {
		return c
	}
	c := int32(len(t.nodes))
	t.nodes = append(t.nodes, nameNode{parent: parent, name: nid})
	t.nodes[parent].children = append(t.nodes[parent].children, c)
	t.kids[key] = c
	return c
}

// add adds value to the root-first stack of names.
func (t *nameTree) add(fr []string, value int64) {
	n := int32(0)
	t.nodes[0].total += value
	for _, name := range fr {
		n = t.child(n, name)
		t.nodes[n].total += value
	}
	t.nodes[n].self += value
}

// weight orders nodes for max_nodes: both sides of a diff count.
func (t *nameTree) weight(n int32) int64 { return t.nodes[n].total + t.nodes[n].rtotal }

// cutNode is a node of a tree cut to max_nodes: a kept node, or (node < 0)
// the "other" node that stands for its parent's dropped children.
type cutNode struct {
	node          int32
	total, self   int64
	rtotal, rself int64
	depth         int
	x, rx         int64 // offsets from the left of the level, per side
	nchildren     int
	name          string
}

// walk visits the tree cut to maxNodes depth first, children ordered by name,
// "other" last, calling fn with each node and its number of children.
func (t *nameTree) walk(maxNodes int, fn func(c *cutNode)) {
	keep := t.keepSet(maxNodes)
	stack := []cutNode{{node: 0, total: t.nodes[0].total, self: t.nodes[0].self, rtotal: t.nodes[0].rtotal, rself: t.nodes[0].rself, name: t.names[0]}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		var push []cutNode
		if it.node >= 0 {
			kids := append([]int32(nil), t.nodes[it.node].children...)
			sort.Slice(kids, func(i, j int) bool { return t.names[t.nodes[kids[i]].name] < t.names[t.nodes[kids[j]].name] })
			var other, rother int64
			x, rx := it.x, it.rx
			for _, k := range kids {
				nd := &t.nodes[k]
				if !keep[k] {
					other += nd.total
					rother += nd.rtotal
					continue
				}
				push = append(push, cutNode{node: k, total: nd.total, self: nd.self, rtotal: nd.rtotal, rself: nd.rself, depth: it.depth + 1, x: x, rx: rx, name: t.names[nd.name]})
				x += nd.total
				rx += nd.rtotal
			}
			if other != 0 || rother != 0 {
				push = append(push, cutNode{node: -1, total: other, self: other, rtotal: rother, rself: rother, depth: it.depth + 1, x: x, rx: rx, name: otherName})
			}
		}
		it.nchildren = len(push)
		fn(&it)
		for i := len(push) - 1; i >= 0; i-- { // reversed so the leftmost pops first
			stack = append(stack, push[i])
		}
	}
}

// flameGraph renders the tree in Pyroscope's flamebearer layout: a level per
// depth, four numbers a node (x offset from the previous node's end on that
// level, total, self, name index), children ordered by name. Nodes beyond
// maxNodes (by total) fold into one "other" child of their parent. Names
// lists only the names the kept nodes use.
func (t *nameTree) flameGraph(maxNodes int) *querierv1.FlameGraph {
	fg := &querierv1.FlameGraph{Total: t.nodes[0].total}
	names := newNameTable()
	var levelEnd []int64
	t.walk(maxNodes, func(c *cutNode) {
		for len(fg.Levels) <= c.depth {
			fg.Levels = append(fg.Levels, &querierv1.Level{})
			levelEnd = append(levelEnd, 0)
		}
		lv := fg.Levels[c.depth]
		lv.Values = append(lv.Values, c.x-levelEnd[c.depth], c.total, c.self, names.id(c.name))
		levelEnd[c.depth] = c.x + c.total
		fg.MaxSelf = max(fg.MaxSelf, c.self)
	})
	fg.Names = names.names
	return fg
}

// diffFlameGraph renders both sides in the flamebearer "double" layout: seven
// numbers a node (left x offset, left total, left self, right x offset,
// right total, right self, name index), offsets per side as in flameGraph.
func (t *nameTree) diffFlameGraph(maxNodes int) *querierv1.FlameGraphDiff {
	fg := &querierv1.FlameGraphDiff{LeftTicks: t.nodes[0].total, RightTicks: t.nodes[0].rtotal}
	fg.Total = fg.LeftTicks + fg.RightTicks
	names := newNameTable()
	var levelEnd, rlevelEnd []int64
	t.walk(maxNodes, func(c *cutNode) {
		for len(fg.Levels) <= c.depth {
			fg.Levels = append(fg.Levels, &querierv1.Level{})
			levelEnd = append(levelEnd, 0)
			rlevelEnd = append(rlevelEnd, 0)
		}
		lv := fg.Levels[c.depth]
		lv.Values = append(lv.Values, c.x-levelEnd[c.depth], c.total, c.self, c.rx-rlevelEnd[c.depth], c.rtotal, c.rself, names.id(c.name))
		levelEnd[c.depth] = c.x + c.total
		rlevelEnd[c.depth] = c.rx + c.rtotal
		fg.MaxSelf = max(fg.MaxSelf, c.self, c.rself)
	})
	fg.Names = names.names
	return fg
}

// treeBytes serialises the tree cut to maxNodes in Pyroscope's tree format
// (SelectMergeStacktracesResponse.tree): nodes depth first, each as uvarint
// name length, name, uvarint self value, uvarint number of children, starting
// with a nameless root. An empty tree is no bytes. Negative values (there
// are none in a merge) would not fit the format and are written as 0.
func (t *nameTree) treeBytes(maxNodes int) []byte {
	if t.nodes[0].total == 0 && len(t.nodes[0].children) == 0 {
		return nil
	}
	var b []byte
	t.walk(maxNodes, func(c *cutNode) {
		name := c.name
		if c.node == 0 {
			name = ""
		}
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
		b = binary.AppendUvarint(b, uint64(max(c.self, 0)))
		b = binary.AppendUvarint(b, uint64(c.nchildren))
	})
	return b
}

type nameTable struct {
	names []string
	ids   map[string]int64
}

func newNameTable() *nameTable { return &nameTable{ids: map[string]int64{}} }

func (n *nameTable) id(s string) int64 {
	if id, ok := n.ids[s]; ok {
		return id
	}
	id := int64(len(n.names))
	n.names = append(n.names, s)
	n.ids[s] = id
	return id
}

// keepSet marks the maxNodes nodes with the largest totals (a parent's total
// is never below its child's, so the kept set is a connected tree).
func (t *nameTree) keepSet(maxNodes int) []bool {
	keep := make([]bool, len(t.nodes))
	if maxNodes <= 0 || maxNodes >= len(t.nodes) {
		for i := range keep {
			keep[i] = true
		}
		return keep
	}
	order := make([]int32, len(t.nodes))
	for i := range order {
		order[i] = int32(i)
	}
	sort.SliceStable(order, func(i, j int) bool { return t.weight(order[i]) > t.weight(order[j]) })
	for _, n := range order[:maxNodes] {
		keep[n] = true
	}
	// Ties may cut a parent while keeping a child: keep ancestors too.
	for _, n := range order[:maxNodes] {
		for p := t.nodes[n].parent; p >= 0 && !keep[p]; p = t.nodes[p].parent {
			keep[p] = true
		}
	}
	keep[0] = true
	return keep
}
