// Package block is Hearth's on-disk and in-bucket block format: a frozen
// tenant head written as a directory <ULID>/ holding
//
//	meta.json         what the block holds (see Meta); written last
//	index.bin         the series index: labels, row range and time range per series
//	profiles.parquet  one row per (series, profile), sorted by series then time
//	symbols.bin       strings, mappings, functions, locations and stack tree nodes
//
// Write produces a block from a head.Selection; Open reads one from any
// objstore.BucketReader (the local blocks directory through objstore's
// filesystem provider, or the bucket) with ranged reads; BucketSource is a
// querier.Source over every block of a bucket.
package block

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/oklog/ulid/v2"

	"github.com/hearth-dev/hearth/internal/formatver"
)

// FormatVersion is the version of the block layout Write produces and Open reads.
const FormatVersion = 1

// File names inside a block directory.
const (
	MetaFile     = "meta.json"
	IndexFile    = "index.bin"
	ProfilesFile = "profiles.parquet"
	SymbolsFile  = "symbols.bin"
)

// Meta is meta.json. Times are Unix nanoseconds, both ends inclusive: the
// oldest and newest profile in the block.
type Meta struct {
	Version int       `json:"version"`
	ULID    ulid.ULID `json:"ulid"`
	Tenant  string    `json:"tenant"`
	MinTime int64     `json:"min_time_ns"`
	MaxTime int64     `json:"max_time_ns"`
	Stats   Stats     `json:"stats"`
	Files   []File    `json:"files"`
	// Source is free-form: who wrote the block (an ingester id, "compactor", ...).
	Source string `json:"source,omitempty"`
	// Compaction is set on blocks the compactor wrote; nil on an ingester's block.
	Compaction *Compaction `json:"compaction,omitempty"`
}

// Compaction says what a compacted block holds: every row of its sources
// whose time is in [RangeStart, RangeEnd), deduplicated by (series, profile id).
type Compaction struct {
	// Level is 1 for a block merged from ingesters' blocks, k for one merged
	// from blocks of lower levels into the k-th -compactor.block-ranges range.
	Level int `json:"level"`
	// RangeStart and RangeEnd (ns, end exclusive) are the range the block covers:
	// aligned to the level's range size.
	RangeStart int64 `json:"range_start_ns"`
	RangeEnd   int64 `json:"range_end_ns"`
	// Sources are the ingesters' blocks (level 0) whose rows in the range the
	// block holds, transitively, as long as they were still in the bucket.
	Sources []ulid.ULID `json:"sources"`
}

// Level is the block's compaction level: 0 for an ingester's block.
func (m *Meta) Level() int {
	if m.Compaction == nil {
		return 0
	}
	return m.Compaction.Level
}

// HasSource reports whether the compacted block holds the rows of source block id in its range.
func (c *Compaction) HasSource(id ulid.ULID) bool {
	for _, s := range c.Sources {
		if s == id {
			return true
		}
	}
	return false
}

// Stats are a block's counts.
type Stats struct {
	Series   int64 `json:"series"`
	Profiles int64 `json:"profiles"` // rows: one series' share of one pushed profile
	Samples  int64 `json:"samples"`  // (stack, value) pairs over all rows
}

// File is one file of the block with its size in bytes.
type File struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// FileSize returns the size of the named file, or -1 when meta does not list it.
func (m *Meta) FileSize(name string) int64 {
	for _, f := range m.Files {
		if f.Name == name {
			return f.Size
		}
	}
	return -1
}

// Bytes is the total size of the block's files.
func (m *Meta) Bytes() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// Overlaps reports whether the block may hold profiles in [start, end] (ns).
func (m *Meta) Overlaps(start, end int64) bool {
	return m.MaxTime >= start && m.MinTime <= end
}

// MarshalMeta renders meta.json.
func MarshalMeta(m *Meta) ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// maxMetaSize bounds what ParseMeta accepts. An ingester's meta.json is a few
// hundred bytes, but a compacted block lists its sources (about 30 bytes
// each): a month of 100 ingesters' 5-minute cuts is 864k sources, 26 MB.
const maxMetaSize = 64 << 20

// ParseMeta parses and validates meta.json.
func ParseMeta(b []byte) (*Meta, error) {
	if len(b) > maxMetaSize {
		return nil, fmt.Errorf("meta.json: %d bytes, more than the %d allowed", len(b), maxMetaSize)
	}
	var m Meta
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("meta.json: %w", err)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("meta.json: %w", err)
	}
	return &m, nil
}

func (m *Meta) validate() error {
	if err := formatver.BlockMeta.Check("meta.json", m.Version); err != nil {
		return err
	}
	if m.ULID == (ulid.ULID{}) {
		return fmt.Errorf("no ulid")
	}
	if m.Stats.Series < 0 || m.Stats.Profiles < 0 || m.Stats.Samples < 0 {
		return fmt.Errorf("negative counts %+v", m.Stats)
	}
	if m.Stats.Profiles > 0 && m.MinTime > m.MaxTime {
		return fmt.Errorf("min time %d is after max time %d", m.MinTime, m.MaxTime)
	}
	for _, name := range []string{IndexFile, ProfilesFile, SymbolsFile} {
		if m.FileSize(name) < 0 {
			return fmt.Errorf("file list lacks %s", name)
		}
	}
	for _, f := range m.Files {
		if f.Size < 0 {
			return fmt.Errorf("file %s has negative size %d", f.Name, f.Size)
		}
	}
	if c := m.Compaction; c != nil {
		if c.Level < 1 || c.Level > 16 {
			return fmt.Errorf("compaction level %d", c.Level)
		}
		if c.RangeStart >= c.RangeEnd {
			return fmt.Errorf("compaction range [%d, %d) is empty", c.RangeStart, c.RangeEnd)
		}
		if m.Stats.Profiles > 0 && (m.MinTime < c.RangeStart || m.MaxTime >= c.RangeEnd) {
			return fmt.Errorf("times [%d, %d] outside the compaction range [%d, %d)", m.MinTime, m.MaxTime, c.RangeStart, c.RangeEnd)
		}
	}
	return nil
}
