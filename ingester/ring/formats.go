package ring

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	dskitring "github.com/grafana/dskit/ring"

	"github.com/hearth-dev/hearth/internal/formatver"
)

// The tokens file is JSON: {"version":1,"tokens":[...]}. Version 1 files of
// the first release (dskit's encoding) have no "version" field, which reads
// as 1; every release reads unknown fields as dskit does (ignored), so the
// field does not stop a rollback. A version this release does not read stops
// the start: dskit would otherwise log the file away and draw new tokens.
const tokensVersion = 1

// tokensFile is the tokens file's JSON.
type tokensFile struct {
	Version int      `json:"version,omitempty"`
	Tokens  []uint32 `json:"tokens"`
}

// marshalTokens encodes tokens as the tokens file, version 1.
func marshalTokens(t dskitring.Tokens) ([]byte, error) {
	return json.Marshal(tokensFile{Version: tokensVersion, Tokens: t})
}

// checkTokensFile refuses a tokens file of a version this release does not
// read; a missing file or one that does not parse is left to dskit (new
// tokens, as before).
func checkTokensFile(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ring: reading the tokens file: %w", err)
	}
	return parseTokensVersion(path, b)
}

// parseTokensVersion checks the version of a tokens file's contents.
func parseTokensVersion(path string, b []byte) error {
	var f struct {
		Version *int `json:"version"`
	}
	if json.Unmarshal(b, &f) != nil || f.Version == nil {
		return nil // version 1 (no field), or not JSON: dskit's affair
	}
	return formatver.Tokens.Check(path, *f.Version)
}

// The prepare-shutdown marker's contents: version 1 is "set\n" (only the
// file's existence counts; any content without a version line is version
// 1). A later version starts with the line "version N"; this release
// refuses to start on one it does not read rather than guessing whether the
// next stop is final.
const markerVersionPrefix = "version "

// Check refuses a marker of a version this release does not read.
func (p *PrepareShutdown) Check() error {
	b, err := os.ReadFile(p.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the prepare-shutdown marker: %w", err)
	}
	return parseMarkerVersion(p.path, string(b))
}

// parseMarkerVersion checks the version of a marker's contents.
func parseMarkerVersion(path, s string) error {
	first, _, _ := strings.Cut(s, "\n")
	v, ok := strings.CutPrefix(first, markerVersionPrefix)
	if !ok {
		return nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("prepare-shutdown marker %s: version line %q", path, first)
	}
	return formatver.PrepareShutdown.Check(path, n)
}
