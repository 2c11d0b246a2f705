package trie

import (
	"sort"
	"strings"
)

// EncodeTrie serializes stacks (folded keys "a;b;c" → value) as a radix
// trie the way the agents do: an unnamed root, nodes named by the longest
// fragment their keys share, children in byte order. Zero values are left
// out.
func EncodeTrie(stacks map[string]uint64) []byte {
	keys := sortedKeys(stacks)
	root := &radix{}
	for _, k := range keys {
		root.insert(k, stacks[k])
	}
	return root.appendTo(nil)
}

type radix struct {
	name     string
	value    uint64
	children []*radix // sorted by name; no two share a first byte
}

func (n *radix) insert(key string, v uint64) {
	for {
		if key == "" {
			n.value += v
			return
		}
		i := sort.Search(len(n.children), func(i int) bool { return n.children[i].name[0] >= key[0] })
		if i == len(n.children) || n.children[i].name[0] != key[0] {
			c := &radix{name: key, value: v}
			n.children = append(n.children, nil)
			copy(n.children[i+1:], n.children[i:])
			n.children[i] = c
			return
		}
		c := n.children[i]
		common := commonPrefix(c.name, key)
		if common < len(c.name) { // split c: its head becomes a new node
			tail := &radix{name: c.name[common:], value: c.value, children: c.children}
			c.name, c.value, c.children = c.name[:common], 0, []*radix{tail}
		}
		n, key = c, key[common:]
	}
}

func (n *radix) appendTo(dst []byte) []byte {
	dst = AppendNode(dst, n.name, n.value, uint64(len(n.children)))
	for _, c := range n.children {
		dst = c.appendTo(dst)
	}
	return dst
}

func commonPrefix(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// EncodeTree serializes stacks (folded keys "a;b;c" → value) as a call
// tree the way the agents do: an unnamed root, one node per frame with its
// self value, children in byte order. Zero values are left out.
func EncodeTree(stacks map[string]uint64) []byte {
	type tnode struct {
		self     uint64
		children map[string]*tnode
	}
	root := &tnode{children: map[string]*tnode{}}
	for _, k := range sortedKeys(stacks) {
		n := root
		for _, f := range strings.Split(k, ";") {
			c, ok := n.children[f]
			if !ok {
				c = &tnode{children: map[string]*tnode{}}
				n.children[f] = c
			}
			n = c
		}
		n.self += stacks[k]
	}
	var walk func(dst []byte, name string, n *tnode) []byte
	walk = func(dst []byte, name string, n *tnode) []byte {
		names := make([]string, 0, len(n.children))
		for c := range n.children {
			names = append(names, c)
		}
		sort.Strings(names)
		dst = AppendNode(dst, name, n.self, uint64(len(names)))
		for _, c := range names {
			dst = walk(dst, c, n.children[c])
		}
		return dst
	}
	return walk(nil, "", root)
}

func sortedKeys(stacks map[string]uint64) []string {
	keys := make([]string, 0, len(stacks))
	for k, v := range stacks {
		if v > 0 && k != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}
