// Package trie reads the two serialized trees the older Pyroscope agents
// (Python, Ruby, .NET before pprof) send on /ingest as format=trie and
// format=tree, and writes them (for tests and load tools).
//
// Both share one encoding: a depth-first (pre-order) list of nodes, each
//
//	uvarint(len(name)) name uvarint(value) uvarint(number of children)
//
// followed by its children. They differ in what a node is:
//
//   - trie: a radix tree over whole stack strings ("main;work;leaf"). A
//     node's name is any fragment of a key, not necessarily a frame; a
//     node's key is the concatenation of the names from the root down, and
//     a non-zero value marks a key that was inserted with that value.
//   - tree: a call tree. A node's name is one frame and its value is the
//     node's self value; the root (the first node) is a placeholder whose
//     name and value are not part of any stack.
//
// Both readers hand every stack to a callback as the frames joined by ';',
// the folded notation, so that the caller converts them as it converts
// folded text. They allocate nothing per node.
package trie

import (
	"encoding/binary"
	"fmt"
)

// Error is malformed input: what, and the byte offset of the node where
// reading failed.
type Error struct {
	Offset int
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("at byte %d: %s", e.Offset, e.Msg) }

// node is one decoded node header; name aliases the input.
type node struct {
	name     []byte
	value    uint64
	children uint64
}

// readNode decodes the node at data[pos:] and returns it and the offset
// after it.
func readNode(data []byte, pos int) (node, int, error) {
	start := pos
	fail := func(what string) (node, int, error) {
		return node{}, 0, &Error{Offset: start, Msg: what}
	}
	nameLen, n := binary.Uvarint(data[pos:])
	if n <= 0 {
		return fail("truncated or overlong name length")
	}
	pos += n
	if nameLen > uint64(len(data)-pos) {
		return fail(fmt.Sprintf("name of %d bytes runs past the end of the data (%d bytes left)", nameLen, len(data)-pos))
	}
	var nd node
	nd.name = data[pos : pos+int(nameLen)]
	pos += int(nameLen)
	if nd.value, n = binary.Uvarint(data[pos:]); n <= 0 {
		return fail("truncated or overlong value")
	}
	pos += n
	if nd.children, n = binary.Uvarint(data[pos:]); n <= 0 {
		return fail("truncated or overlong child count")
	}
	return nd, pos + n, nil
}

// open is a node whose children are being read: where its part of the key
// starts and how many children are still to come.
type open struct {
	start int
	left  uint64
}

// Trie calls fn for every node of a serialized trie whose value is not
// zero, with its key (the concatenated names from the root) and value. key
// is only valid during the call. An error from fn stops the walk and is
// returned.
//
// As Pyroscope reads it: every node after the root's subtree is read as
// another child of the root (the root's child count is not enforced), and
// the data may end after any complete node, even where a node still
// expects children. Empty data is an empty trie.
func Trie(data []byte, fn func(key []byte, value uint64) error) error {
	var key []byte
	stack := make([]open, 0, 64)
	for pos := 0; pos < len(data); {
		for len(stack) > 1 && stack[len(stack)-1].left == 0 {
			key = key[:stack[len(stack)-1].start]
			stack = stack[:len(stack)-1]
		}
		nd, next, err := readNode(data, pos)
		if err != nil {
			return err
		}
		pos = next
		if len(stack) > 1 {
			stack[len(stack)-1].left--
		}
		start := len(key)
		key = append(key, nd.name...)
		if nd.value > 0 {
			if err := fn(key, nd.value); err != nil {
				return err
			}
		}
		if len(stack) == 0 || nd.children > 0 {
			stack = append(stack, open{start: start, left: nd.children})
		} else {
			key = key[:start]
		}
	}
	return nil
}

// Tree calls fn for every node of a serialized call tree below the root
// whose self value is not zero, with its stack (the names from the root's
// child down, joined by ';') and the value; nodes whose stack is empty are
// skipped, as Pyroscope does. stack is only valid during the call. An error
// from fn stops the walk and is returned.
//
// The data holds exactly one tree: it is an error for it to end before the
// last node the child counts announce, and bytes after that node are
// ignored, as Pyroscope reads it.
func Tree(data []byte, fn func(stack []byte, value uint64) error) error {
	root, pos, err := readNode(data, 0)
	if err != nil {
		return err
	}
	var key []byte
	stack := make([]open, 1, 64)
	stack[0] = open{start: 0, left: root.children}
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if top.left == 0 {
			key = key[:top.start]
			stack = stack[:len(stack)-1]
			continue
		}
		top.left--
		if pos >= len(data) {
			return &Error{Offset: pos, Msg: "the data ends before the tree does"}
		}
		nd, next, err := readNode(data, pos)
		if err != nil {
			return err
		}
		pos = next
		start := len(key)
		if len(stack) > 1 {
			key = append(key, ';')
		}
		key = append(key, nd.name...)
		if nd.value > 0 && len(key) > 0 {
			if err := fn(key, nd.value); err != nil {
				return err
			}
		}
		if nd.children > 0 {
			stack = append(stack, open{start: start, left: nd.children})
		} else {
			key = key[:start]
		}
	}
	return nil
}

// AppendNode appends one node header (name, value, number of children) to
// dst; its children follow it.
func AppendNode(dst []byte, name string, value, children uint64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(name)))
	dst = append(dst, name...)
	dst = binary.AppendUvarint(dst, value)
	return binary.AppendUvarint(dst, children)
}
