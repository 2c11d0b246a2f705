package wal

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the Prometheus metrics of the WAL and of Replay. Create one
// with NewMetrics and pass it in Options and ReplayOptions; a nil *Metrics
// in options means private, unregistered metrics.
type Metrics struct {
	recordsAppended prometheus.Counter
	bytesAppended   prometheus.Counter
	appendErrors    prometheus.Counter
	fsyncs          prometheus.Counter
	fsyncErrors     prometheus.Counter
	fsyncDuration   prometheus.Histogram
	batchRecords    prometheus.Histogram
	batchBytes      prometheus.Histogram
	segments        prometheus.Gauge
	currentSegment  prometheus.Gauge
	segmentsCreated prometheus.Counter
	segmentsDeleted prometheus.Counter

	corruptRecords      prometheus.Counter
	replayRecords       prometheus.Counter
	replayBytes         prometheus.Counter
	replayTruncated     prometheus.Counter
	replayCorruptSegs   prometheus.Counter
	replayDuration      prometheus.Gauge
	replayLastSucceeded prometheus.Gauge
}

// NewMetrics creates the WAL metrics and registers them with reg (if not nil).
// Call it once per registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "hearth", "wal"
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &Metrics{
		recordsAppended: c("records_appended_total", "Records appended to the WAL and acknowledged."),
		bytesAppended:   c("bytes_appended_total", "Bytes (framing included) appended to the WAL and acknowledged."),
		appendErrors:    c("append_errors_total", "Appends that failed with a write, fsync or rotation error."),
		fsyncs:          c("fsyncs_total", "fsync calls on WAL segments."),
		fsyncErrors:     c("fsync_errors_total", "fsync calls on WAL segments that failed."),
		fsyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "fsync_duration_seconds", Help: "Duration of fsync calls on WAL segments.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "batch_records", Help: "Records written by one group-commit write.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		batchBytes: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "batch_bytes", Help: "Bytes written by one group-commit write.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 10)}),
		segments:        g("segments", "WAL segment files currently on disk."),
		currentSegment:  g("segment_current", "Index of the WAL segment being written."),
		segmentsCreated: c("segments_created_total", "WAL segments created."),
		segmentsDeleted: c("segments_deleted_total", "WAL segments deleted by Truncate."),

		corruptRecords:      c("corrupt_records_total", "Corrupt WAL records found (each one skips the rest of its segment)."),
		replayRecords:       c("replay_records_total", "Records read by WAL replay."),
		replayBytes:         c("replay_bytes_total", "Bytes (framing included) of good records read by WAL replay."),
		replayTruncated:     c("replay_truncated_bytes_total", "Bytes of torn tails truncated by WAL replay/open."),
		replayCorruptSegs:   c("replay_corrupt_segments_total", "Segments whose rest was skipped by WAL replay because of corruption."),
		replayDuration:      g("replay_duration_seconds", "Duration of the last WAL replay."),
		replayLastSucceeded: g("replay_last_success_timestamp_seconds", "Unix time at which the last WAL replay finished without error."),
	}
	if reg != nil {
		reg.MustRegister(m.recordsAppended, m.bytesAppended, m.appendErrors, m.fsyncs, m.fsyncErrors,
			m.fsyncDuration, m.batchRecords, m.batchBytes, m.segments, m.currentSegment,
			m.segmentsCreated, m.segmentsDeleted, m.corruptRecords, m.replayRecords, m.replayBytes,
			m.replayTruncated, m.replayCorruptSegs, m.replayDuration, m.replayLastSucceeded)
	}
	return m
}
