package app

import (
	"flag"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var flagErrHelp = flag.ErrHelp

// instrument records request counts and latency per route.
func instrument(reg prometheus.Registerer, next http.Handler) http.Handler {
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "hearth_request_duration_seconds",
		Help:    "HTTP and RPC request latency by route and status.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
	}, []string{"route", "status"})
	reg.MustRegister(dur)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := r.Pattern // set by the mux: bounded cardinality
		switch route {
		case "/metrics", "/ready", "/healthz":
			return
		case "":
			route = "other"
		}
		dur.WithLabelValues(route, strconv.Itoa(sw.status)).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Flush keeps streaming (gRPC) working through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
