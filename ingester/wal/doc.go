// Package wal is Hearth's write-ahead log: an append-only log of opaque
// records ([]byte payloads) in numbered segment files, with group commit,
// a configurable fsync policy, crash-tolerant replay and truncation of
// segments whose contents are durable elsewhere.
//
// # Files
//
// A WAL is a directory of segment files named by a decimal index, zero padded
// to at least 8 digits: 00000001.wal, 00000002.wal, ... Records are appended to
// the segment with the highest index; a new segment is started when the next
// record would make the current one exceed Options.SegmentSize (default
// 128 MiB) and when the caller calls Rotate. Other files are ignored.
//
// # Record format (version 1)
//
// A segment is a plain sequence of records, with no segment header. Each
// record is a 16-byte header followed by the payload; integers are little
// endian:
//
//	offset size field
//	0      4    payload length n
//	4      1    format version (1)
//	5      1    flags (0; a reader rejects unknown flags)
//	6      2    reserved (0)
//	8      4    CRC32C (Castagnoli) of the payload
//	12     4    CRC32C of header bytes [0,12)
//	16     n    payload
//
// The header has its own CRC so that a damaged length can never make a reader
// skip or misframe data: a record is good only if its header CRC and its
// payload CRC both match.
//
// The version byte at offset 4 and the header CRC at offset 12 keep their
// places in every future version. A header whose CRC matches but whose
// version is not 1 is a record of another release: Replay and Open stop with
// a *formatver.Error naming the segment (hearth_unsupported_format_version_total
// {format="wal_segment"}) and change nothing, also when it follows a torn
// write: such a segment is never truncated nor skipped (docs/upgrading.md). A record's position (Pos) is its segment index and
// the offset of its header; positions increase in append order.
//
// # Fsync policies and what they risk
//
//   - always (default): Append returns after the record is written and
//     fdatasync'ed. Concurrent appends are grouped: one writer goroutine takes
//     everything queued, writes it with one write call and fsyncs once, then
//     acknowledges all of it. An acknowledged record survives a process crash,
//     a kernel crash and a power loss (on storage that honours fsync).
//   - interval: Append returns after the record is written to the file (the OS
//     page cache); the file is fsynced every Options.SyncInterval (default
//     100ms), on rotation and on Close. A process crash (kill -9, OOM kill,
//     panic) loses nothing acknowledged, because the kernel still has the
//     data; a kernel crash or power loss may lose up to one interval of
//     acknowledged records (plus the fsync time).
//   - off: never fsyncs (for benchmarks). A process crash loses nothing
//     acknowledged; a kernel crash or power loss may lose everything the
//     kernel had not written back yet (typically up to ~30 s of records).
//
// # Recovery
//
// Replay reads all segments in order. Damage is classified per segment:
//
//   - Torn tail: in the last segment, a record cut short (short header or
//     short payload) or a bad record after which no valid record exists
//     anywhere in the file (e.g. a zero-filled or garbage tail left by a crash
//     mid-write). The file is truncated at the last good record and replay
//     succeeds; under the always policy such a record was never acknowledged.
//   - Corruption: a bad record followed by valid records, or any bad record in
//     a segment that is not the last. The rest of that segment is skipped with
//     an error log line and the hearth_wal_corrupt_records_total counter, and
//     replay continues with the next segment. Open starts a new segment
//     instead of appending after corruption.
//
// Neither makes Replay or Open fail; only I/O errors (and the callback's
// errors) do, so a damaged WAL never crash-loops the process.
//
// # Write errors
//
// A record is only ever written as part of one write call of whole records.
// If the write or its fsync fails (for example ENOSPC) the error is returned
// to every appender of that batch and the segment is truncated back to its
// last good record before anything else is written, so the WAL stays usable
// once space is available again. Even without that truncation (a crash right
// after the failure), CRCs keep a partial record from ever being read back
// as good.
//
// # Truncation
//
// Truncate(p) deletes the segments entirely before p (index < p.Segment),
// never the one being written. The ingester calls Rotate when it cuts its head
// into a block, so segment boundaries align with blocks, and Truncate with the
// position Rotate returned once that block is in the bucket.
package wal
