package shipper

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	uploads       prometheus.Counter
	failures      prometheus.Counter
	dropped       prometheus.Counter
	deleted       prometheus.Counter
	uploadedBytes prometheus.Counter
	duration      prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, s *Shipper) *metrics {
	const ns, sub = "hearth", "shipper"
	m := &metrics{
		uploads: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "uploads_total", Help: "Blocks uploaded to object storage."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "upload_failures_total", Help: "Failed block upload attempts (each is retried)."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "blocks_dropped_total", Help: "Queued blocks whose local directory disappeared before upload."}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "local_blocks_deleted_total", Help: "Uploaded local blocks deleted after the local retention."}),
		uploadedBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "uploaded_bytes_total", Help: "Bytes of blocks uploaded."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "upload_duration_seconds", Help: "Time to upload one block (successful uploads).",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10)}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.uploads, m.failures, m.dropped, m.deleted, m.uploadedBytes, m.duration,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "pending_blocks", Help: "Local blocks not yet uploaded."},
			func() float64 { return float64(s.PendingBlocks()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "pending_bytes", Help: "Bytes of local blocks not yet uploaded."},
			func() float64 { return float64(s.PendingBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "failing_since_seconds", Help: "Unix time the current run of upload failures began; 0 while uploads succeed."},
			func() float64 {
				st := s.Status()
				if st.LastError == nil {
					return 0
				}
				return float64(st.FailingSince.UnixNano()) / 1e9
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "last_success_timestamp_seconds", Help: "Unix time the last block finished uploading; 0 before the first."},
			func() float64 {
				st := s.Status()
				if st.LastSuccess.IsZero() {
					return 0
				}
				return float64(st.LastSuccess.UnixNano()) / 1e9
			}),
	)
	return m
}
