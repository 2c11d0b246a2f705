package wal

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/hearth-dev/hearth/internal/durable"
	"github.com/hearth-dev/hearth/internal/formatver"
)

// The checkpoint file names the first WAL segment not covered by local
// blocks. Version 1 (every release so far) is that index in decimal and a
// newline. A later version starts with the line "version N": this release
// refuses it (it cannot know which segments the file covers) rather than
// replaying from the start or from nothing.
const checkpointVersionPrefix = "version "

// ReadCheckpoint reads the checkpoint at path; a missing file is 0 (replay
// every segment).
func ReadCheckpoint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return parseCheckpoint(path, string(b))
}

// parseCheckpoint decodes a checkpoint file's contents.
func parseCheckpoint(path, s string) (uint64, error) {
	first, rest, _ := strings.Cut(s, "\n")
	if v, ok := strings.CutPrefix(first, checkpointVersionPrefix); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("wal checkpoint %s: version line %q", path, first)
		}
		if err := formatver.Checkpoint.Check(path, n); err != nil {
			return 0, err
		}
		s = rest // version 1 spelled out: the index follows
	}
	seg, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("wal checkpoint %s: %w", path, err)
	}
	return seg, nil
}

// WriteCheckpoint writes seg as the checkpoint, durably, in version 1 (which
// every release reads).
func WriteCheckpoint(path string, seg uint64) error {
	return durable.WriteFile(path, []byte(strconv.FormatUint(seg, 10)+"\n"), 0o644)
}
