package block

import "github.com/hearth-dev/hearth/ingester/symdb"

// Exported for ingester/remote, which ships head selections between
// ingesters with the symbols.bin encoding.

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
