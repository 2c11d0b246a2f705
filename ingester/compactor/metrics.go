package compactor

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	jobs        *prometheus.CounterVec
	failures    *prometheus.CounterVec
	duration    prometheus.Histogram
	blocksIn    prometheus.Counter
	blocksOut   prometheus.Counter
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	rowsIn      prometheus.Counter
	rowsOut     prometheus.Counter
	duplicates  prometheus.Counter
	marked      *prometheus.CounterVec
	deleted     prometheus.Counter
	leftovers   *prometheus.CounterVec
	unreadable  prometheus.Gauge
	lastSuccess *prometheus.GaugeVec
	bucketOps   *prometheus.CounterVec
	// Tenant deletion (tenantdelete.go).
	tenantsDeleted     prometheus.Counter
	tenantObjects      prometheus.Counter
	deletionInProgress prometheus.Gauge
	oldestDeletion     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "hearth", "compactor"
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "jobs_total",
			Help: "Compaction jobs run by this instance, by result (success, failure)."}, []string{"result"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "failures_total",
			Help: "Compactor failures by stage (pass, job, mark, delete, cleanup, index, tenant_deletion); each is retried at the next interval."}, []string{"stage"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "job_duration_seconds",
			Help: "Time a compaction job took (download, merge, upload).", Buckets: prometheus.ExponentialBuckets(0.05, 4, 10)}),
		blocksIn:   c("blocks_in_total", "Blocks read by successful compaction jobs."),
		blocksOut:  c("blocks_out_total", "Blocks written by successful compaction jobs."),
		bytesIn:    c("bytes_in_total", "Bytes of the blocks read by successful compaction jobs."),
		bytesOut:   c("bytes_out_total", "Bytes of the blocks written by successful compaction jobs."),
		rowsIn:     c("rows_in_total", "Rows (in range) read by successful compaction jobs."),
		rowsOut:    c("rows_out_total", "Rows written by successful compaction jobs."),
		duplicates: c("duplicate_rows_total", "Rows dropped by compaction because another block held the same (series, profile id)."),
		marked: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "blocks_marked_total",
			Help: "Deletion marks written, by reason (compacted, retention)."}, []string{"reason"}),
		deleted: c("blocks_deleted_total", "Marked blocks deleted after the deletion delay."),
		leftovers: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "partial_blocks_deleted_total",
			Help: "Partial uploads deleted, by writer: compactor (a crashed job's, after twice the job timeout), ingester (one that never came back, after -compactor.abandoned-upload-grace)."}, []string{"writer"}),
		unreadable: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "unreadable_blocks",
			Help: "Blocks whose meta.json this instance could not read (a failed request, or a meta.json this build refuses) in its last pass; they are kept, left out of compaction and never deleted."}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "last_successful_job_timestamp_seconds",
			Help: "Unix time of the last successful compaction job of a tenant run by this instance."}, []string{"tenant"}),
		bucketOps: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "bucket_operations_total",
			Help: "Object storage requests made by this instance's compactor (listings, reads, writes, deletions), by operation."}, []string{"operation"}),
	}
	for _, op := range bucketOps {
		m.bucketOps.WithLabelValues(op)
	}
	m.tenantsDeleted = c("tenants_deleted_total", "Tenant deletions finished by this instance (POST /compactor/delete_tenant): nothing of the tenant is left but its mark.")
	m.tenantObjects = c("tenant_deletion_objects_deleted_total", "Objects of tenants being deleted that this instance deleted (blocks' files, settings, ad hoc profiles, marks, bucket indexes).")
	m.deletionInProgress = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "tenant_deletion_in_progress",
		Help: "Tenants owned by this instance whose deletion is in progress (their mark has no finished time yet), as of its last pass."})
	m.oldestDeletion = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "tenant_deletion_oldest_request_timestamp_seconds",
		Help: "Unix time of the earliest request among the tenant deletions in progress this instance owns, as of its last pass (0: none); HearthTenantDeletionStuck alerts on its age."})
	for _, w := range []string{"compactor", "ingester"} {
		m.leftovers.WithLabelValues(w) // on /metrics at 0 from the start
	}
	if reg != nil {
		reg.MustRegister(m.jobs, m.failures, m.duration, m.blocksIn, m.blocksOut, m.bytesIn, m.bytesOut,
			m.rowsIn, m.rowsOut, m.duplicates, m.marked, m.deleted, m.leftovers, m.unreadable, m.lastSuccess, m.bucketOps,
			m.tenantsDeleted, m.tenantObjects, m.deletionInProgress, m.oldestDeletion)
	}
	return m
}
