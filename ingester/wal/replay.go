package wal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-dev/hearth/internal/formatver"
)

const segmentExt = ".wal"

// segmentName returns the file name of segment idx, e.g. "00000001.wal".
func segmentName(idx uint64) string { return fmt.Sprintf("%08d%s", idx, segmentExt) }

// parseSegmentName returns the index of a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, segmentExt)
	if !ok || base == "" {
		return 0, false
	}
	for _, c := range base {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	idx, err := strconv.ParseUint(base, 10, 64)
	if err != nil || idx == 0 {
		return 0, false
	}
	return idx, true
}

// ListSegments returns the segment indexes in dir, ascending. A missing
// directory has no segments.
func ListSegments(dir string) ([]uint64, error) { return listSegments(dir) }

func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var idxs []uint64
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if idx, ok := parseSegmentName(e.Name()); ok {
			idxs = append(idxs, idx)
		}
	}
	slices.Sort(idxs)
	return idxs, nil
}

// Stats summarises a Replay.
type Stats struct {
	Segments        int           // segment files read
	Records         int64         // good records passed to the callback
	Bytes           int64         // on-disk bytes of those records (framing included)
	Duration        time.Duration // wall time of the replay
	CorruptSegments int           // segments whose rest was skipped because of a corrupt record
	TruncatedBytes  int64         // bytes of torn tail removed from the last segment
	SkippedSegments int           // segments not read (ReplayOptions.Skip)
}

// ReplayOptions configure Replay. The zero value is usable.
type ReplayOptions struct {
	Logger  *slog.Logger // default slog.Default()
	Metrics *Metrics     // default: private unregistered metrics
	// ProgressInterval is the period of progress log lines (default 5s).
	ProgressInterval time.Duration
	// ReadBufferSize is the read buffer size (default 1 MiB).
	ReadBufferSize int
	// Skip, when set, names segments not to read at all (their records are
	// elsewhere: a head snapshot). The last segment is always read: its torn
	// tail must be truncated before appending.
	Skip func(seg uint64) bool
}

func (o *ReplayOptions) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = 5 * time.Second
	}
}

// Replay reads every segment in dir in order and calls fn for every good
// record with its position and payload. The payload is only valid during the
// call (copy it to keep it). A missing dir is an empty WAL.
//
// Damage never makes Replay fail:
//   - a torn tail of the last segment (a record cut short by a crash, or a
//     bad record after which no valid record follows) is truncated at the last
//     good record, so that appends after Open continue cleanly;
//   - a corrupt record anywhere else (a bad record followed by valid ones, or
//     any bad record in a segment that is not the last) skips the rest of that
//     segment with an error log line and hearth_wal_corrupt_records_total,
//     and replay goes on with the next segment.
//
// A record of a format version this release does not read (written by a
// newer release) is neither damage nor skipped: Replay stops with a
// *formatver.Error naming the segment, and changes nothing on disk.
//
// Replay returns an error only for I/O errors, such a version, and errors
// returned by fn (which stop it). It must not run while a WAL is open on dir.
func Replay(dir string, opts ReplayOptions, fn func(pos Pos, payload []byte) error) (Stats, error) {
	opts.defaults()
	log, m := opts.Logger, opts.Metrics
	start := time.Now()
	var st Stats
	idxs, err := listSegments(dir)
	if err != nil {
		return st, fmt.Errorf("wal replay: %w", err)
	}
	log.Info("wal replay starting", "dir", dir, "segments", len(idxs))
	lastLog := start
	progress := func() {
		if now := time.Now(); now.Sub(lastLog) >= opts.ProgressInterval {
			lastLog = now
			log.Info("wal replay progress", "dir", dir, "records", st.Records, "bytes", st.Bytes,
				"seconds", now.Sub(start).Seconds(), "segments_done", st.Segments, "segments", len(idxs))
		}
	}
	for i, idx := range idxs {
		last := i == len(idxs)-1
		if !last && opts.Skip != nil && opts.Skip(idx) {
			st.SkippedSegments++
			continue
		}
		res, err := recoverSegment(dir, idx, last, opts.ReadBufferSize, log, m, func(off int64, payload []byte) error {
			if err := fn(Pos{Segment: idx, Offset: off}, payload); err != nil {
				return err
			}
			st.Records++
			st.Bytes += headerSize + int64(len(payload))
			m.replayRecords.Inc()
			m.replayBytes.Add(float64(headerSize + len(payload)))
			progress()
			return nil
		})
		if err != nil {
			return st, err
		}
		st.Segments++
		st.TruncatedBytes += res.truncated
		if res.corrupt {
			st.CorruptSegments++
		}
	}
	st.Duration = time.Since(start)
	m.replayDuration.Set(st.Duration.Seconds())
	m.replayLastSucceeded.SetToCurrentTime()
	mbps := 0.0
	if s := st.Duration.Seconds(); s > 0 {
		mbps = float64(st.Bytes) / s / 1e6
	}
	lvl := slog.LevelInfo
	if st.CorruptSegments > 0 {
		lvl = slog.LevelError
	}
	log.Log(context.Background(), lvl, "wal replay done", "dir", dir, "segments", st.Segments, "records", st.Records,
		"bytes", st.Bytes, "seconds", st.Duration.Seconds(), "mb_per_second", mbps,
		"corrupt_segments", st.CorruptSegments, "truncated_bytes", st.TruncatedBytes, "skipped_segments", st.SkippedSegments)
	return st, nil
}

// testSkipTruncateSync lets the fuzzer skip the fsync after truncating a
// torn tail (it only costs time there).
var testSkipTruncateSync bool

// recovered is what recoverSegment did to one segment.
type recovered struct {
	size      int64 // size of the segment after recovery
	good      int64 // end of the last good record (== size unless corrupt)
	records   int64
	corrupt   bool  // a corrupt record skipped the rest of the segment
	truncated int64 // bytes removed from a torn tail
}

// recoverSegment scans segment idx, calling fn for its good records, and
// deals with damage: a torn tail of the last segment is truncated away (and
// the truncation fsynced); anything else is reported as corruption. Errors
// are I/O errors or errors from fn.
func recoverSegment(dir string, idx uint64, last bool, bufSize int, log *slog.Logger, m *Metrics, fn func(off int64, payload []byte) error) (recovered, error) {
	path := filepath.Join(dir, segmentName(idx))
	flag := os.O_RDONLY
	if last {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return recovered{}, fmt.Errorf("wal: open segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return recovered{}, fmt.Errorf("wal: stat segment: %w", err)
	}
	size := fi.Size()
	res, err := scanSegment(f, size, bufSize, fn)
	if err != nil {
		if errors.Is(err, errStop) {
			return recovered{}, err
		}
		var ve *versionError
		if errors.As(err, &ve) {
			// Written by another release: refused, neither truncated nor skipped.
			return recovered{}, fmt.Errorf("wal: %w", formatver.WALSegment.Check(fmt.Sprintf("%s (offset %d)", path, ve.off), ve.version))
		}
		return recovered{}, fmt.Errorf("wal: segment %s: %w", path, err)
	}
	out := recovered{size: size, good: res.good, records: res.records}
	if res.bad == badNone {
		return out, nil
	}
	if last && res.torn {
		if err := f.Truncate(res.good); err != nil {
			return out, fmt.Errorf("wal: truncate torn tail of %s: %w", path, err)
		}
		if !testSkipTruncateSync {
			if err := f.Sync(); err != nil {
				return out, fmt.Errorf("wal: sync truncated %s: %w", path, err)
			}
		}
		out.truncated = size - res.good
		out.size = res.good
		m.replayTruncated.Add(float64(out.truncated))
		log.Warn("wal: truncated torn tail of last segment (crash during a write; the record was never acknowledged under fsync policy always)",
			"segment", path, "offset", res.good, "truncated_bytes", out.truncated, "reason", res.bad.String(),
			"good_records", res.records)
		return out, nil
	}
	out.corrupt = true
	m.corruptRecords.Inc()
	m.replayCorruptSegs.Inc()
	log.Error("WAL CORRUPTION: corrupt record in the middle of a segment; skipping the rest of the segment",
		"segment", path, "offset", res.good, "segment_size", size, "skipped_bytes", size-res.good,
		"reason", res.bad.String(), "last_segment", last, "good_records", res.records)
	return out, nil
}
