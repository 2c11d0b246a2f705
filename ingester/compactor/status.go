package compactor

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// JobStatus is one finished job, as the status page shows it.
type JobStatus struct {
	Tenant     string    `json:"tenant"`
	Level      int       `json:"level"`
	Start      time.Time `json:"range_start"`
	End        time.Time `json:"range_end"`
	Inputs     int       `json:"inputs"`
	Output     string    `json:"output,omitempty"`
	RowsIn     int64     `json:"rows_in"`
	RowsOut    int64     `json:"rows_out"`
	Duplicates int64     `json:"duplicates"`
	BytesIn    int64     `json:"bytes_in"`
	BytesOut   int64     `json:"bytes_out"`
	StartedAt  time.Time `json:"started_at"`
	Seconds    float64   `json:"seconds"`
	Result     string    `json:"result"`
	Error      string    `json:"error,omitempty"`
}

// RunningJob is the job in progress and its stage: download, merge, upload.
type RunningJob struct {
	Key   string    `json:"key"`
	Stage string    `json:"stage"`
	Since time.Time `json:"since"`
}

func (c *Compactor) stage(key, stage string) {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	if stage == "" {
		c.current = nil
		return
	}
	c.current = &RunningJob{Key: key, Stage: stage, Since: time.Now().UTC()}
}

// maxJobStatus is how many finished jobs the status page keeps.
const maxJobStatus = 100

func (c *Compactor) record(js JobStatus) {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	c.jobs = append(c.jobs, js)
	if n := len(c.jobs); n > maxJobStatus {
		c.jobs = append(c.jobs[:0], c.jobs[n-maxJobStatus:]...)
	}
}

// Status is what GET /compactor/status returns.
type Status struct {
	Instance    string      `json:"instance"`
	BlockRanges string      `json:"block_ranges"`
	Interval    string      `json:"compaction_interval"`
	Passes      int64       `json:"passes"`
	LastPass    time.Time   `json:"last_pass"`
	LastError   string      `json:"last_error,omitempty"`
	Running     *RunningJob `json:"running,omitempty"`
	Jobs        []JobStatus `json:"jobs"` // most recent first
}

// Status returns the compactor's state and its last jobs, most recent first.
func (c *Compactor) Status() Status {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	st := Status{Instance: c.opts.Instance, BlockRanges: c.cfg.BlockRanges.String(), Interval: c.cfg.CompactionInterval.String(),
		Passes: c.passes, LastPass: c.lastPass, LastError: c.lastErr}
	if c.current != nil {
		r := *c.current
		st.Running = &r
	}
	for i := len(c.jobs) - 1; i >= 0; i-- {
		st.Jobs = append(st.Jobs, c.jobs[i])
	}
	return st
}

var statusPage = template.Must(template.New("status").Parse(`<!DOCTYPE html>
<html><head><title>Hearth compactor</title></head><body>
<h1>Compactor {{.Instance}}</h1>
{{with .Running}}<p>Running: {{.Key}}, {{.Stage}} since {{.Since.Format "15:04:05"}}.</p>{{end}}
<p>Block ranges {{.BlockRanges}}, every {{.Interval}}; {{.Passes}} passes, the last at {{.LastPass.Format "2006-01-02T15:04:05Z07:00"}}{{if .LastError}}: <b>{{.LastError}}</b>{{end}}.</p>
<table border="1" cellpadding="3">
<tr><th>finished job</th><th>tenant</th><th>level</th><th>range</th><th>inputs</th><th>output</th><th>rows in</th><th>rows out</th><th>duplicates</th><th>bytes in</th><th>bytes out</th><th>seconds</th><th>result</th></tr>
{{range .Jobs}}<tr><td>{{.StartedAt.Format "15:04:05"}}</td><td>{{.Tenant}}</td><td>{{.Level}}</td><td>{{.Start.Format "2006-01-02T15:04:05Z"}} – {{.End.Format "15:04:05Z"}}</td><td>{{.Inputs}}</td><td>{{.Output}}</td><td>{{.RowsIn}}</td><td>{{.RowsOut}}</td><td>{{.Duplicates}}</td><td>{{.BytesIn}}</td><td>{{.BytesOut}}</td><td>{{printf "%.2f" .Seconds}}</td><td>{{.Result}}{{if .Error}}: {{.Error}}{{end}}</td></tr>
{{end}}</table></body></html>
`))

// ServeHTTP is GET /compactor/status: HTML, or JSON with Accept: application/json or ?format=json.
func (c *Compactor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := c.Status()
	if r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = statusPage.Execute(w, st)
}
