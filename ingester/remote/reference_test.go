package remote

import (
	"encoding/binary"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/symdb"
)

// pruneSelectionReference keeps only the symbols the selection's rows reference,
// renumbering the rows' stack ids (order preserved). The input is not modified.
func pruneSelectionReference(sel head.Selection) (head.Selection, error) {
	if sel.Symbols == nil {
		return sel, nil
	}
	var derr error
	pruned, nodeMap := block.PruneSymbols(sel.Symbols, func(use func(uint32)) {
		for _, s := range sel.Series {
			for _, p := range s.Profiles {
				if err := head.DecodeSamples(p.Samples, func(st uint32, _ int64) { use(st) }); err != nil && derr == nil {
					derr = err
				}
			}
		}
	})
	if derr != nil {
		return sel, derr
	}
	if nodeMap == nil {
		return sel, nil
	}
	out := head.Selection{Symbols: pruned, Series: make([]head.SeriesRows, len(sel.Series))}
	remap := func(st uint32) uint32 { return nodeMap[st] }
	for i, s := range sel.Series {
		rows := make([]head.Profile, len(s.Profiles))
		for j, p := range s.Profiles {
			enc, err := head.RemapSamples(make([]byte, 0, len(p.Samples)), p.Samples, remap) // keeps the span samples
			if err != nil {
				return sel, err
			}
			p.Samples = enc
			rows[j] = p
		}
		out.Series[i] = head.SeriesRows{Labels: s.Labels, Profiles: rows}
	}
	return out, nil
}

// encodeSelectionsReference is EncodeSelections as it was before issue 25:
// every row of the selection in memory, pruned into a copy, then encoded
// into one payload compressed at once. The reference the streaming encoder
// must match byte for byte once decompressed; encodes selections for the wire, pruning each one's
// symbols to the stacks its rows use. Selections without rows are left out.
func encodeSelectionsReference(sels []head.Selection) ([]byte, error) {
	var keep []head.Selection
	for _, sel := range sels {
		if len(sel.Series) == 0 {
			continue
		}
		p, err := pruneSelectionReference(sel)
		if err != nil {
			return nil, err
		}
		keep = append(keep, p)
	}
	out := append([]byte(selectMagic), formatVersion)
	out = binary.AppendUvarint(out, uint64(len(keep)))
	for _, sel := range keep {
		syms := sel.Symbols
		if syms == nil {
			syms = &symdb.Snapshot{Strings: []string{""}, Mappings: []symdb.Mapping{{}}, Functions: []symdb.Function{{}}, Locations: []symdb.Location{{}}, Nodes: []symdb.Node{{}}}
		}
		sb := block.EncodeSymbols(syms)
		out = binary.AppendUvarint(out, uint64(len(sb)))
		out = append(out, sb...)

		st := &strTable{ids: map[string]uint64{}}
		var series, rows []byte
		series = binary.AppendUvarint(series, uint64(len(sel.Series)))
		for _, s := range sel.Series {
			series = appendLabels(series, st, s.Labels)
			series = binary.AppendUvarint(series, uint64(len(s.Profiles)))
			prev := int64(0)
			for _, p := range s.Profiles {
				rows = append(rows, p.ID[:]...)
				rows = binary.AppendVarint(rows, p.TimeNanos-prev)
				prev = p.TimeNanos
				rows = binary.AppendVarint(rows, p.Total)
				rows = binary.AppendUvarint(rows, uint64(len(p.Samples)))
				rows = append(rows, p.Samples...)
			}
		}
		payload := st.appendTo(make([]byte, 0, len(series)+len(rows)+256))
		payload = append(payload, series...)
		payload = append(payload, rows...)
		out = compressed(out, payload)
	}
	return out, nil
}
