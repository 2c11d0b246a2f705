package ingest

import (
	"bytes"
	"compress/gzip"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	jfrpprof "github.com/grafana/jfr-parser/pprof"
)

// tinyJFR is a recording from OpenJDK 17 (ingest/jfr's testdata): CPU,
// allocations outside TLABs and parking.
func tinyJFR(t testing.TB) (raw, gz []byte) {
	t.Helper()
	gz, err := os.ReadFile("jfr/testdata/tiny.jfr.gz")
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, err = io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return raw, gz
}

// jfrMultipart is the body the Pyroscope Java agent sends: the recording in
// the part "jfr", the labels snapshot in "labels".
func jfrMultipart(t testing.TB, parts map[string][]byte) (body []byte, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	names := make([]string, 0, len(parts))
	for n := range parts {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fw, err := w.CreateFormFile(n, n)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write(parts[n])
	}
	_ = w.Close()
	return buf.Bytes(), w.FormDataContentType()
}

func parseJFRRequest(t testing.TB, query, contentType string, body []byte) (*Request, error) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/ingest?"+query, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return ParseRequest(req, Limits{}, time.Unix(1700000000, 0))
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

func labelValue(ls []LabelPair, name string) (string, bool) {
	for _, l := range ls {
		if l.Name == name {
			return l.Value, true
		}
	}
	return "", false
}

func TestJFRBodies(t *testing.T) {
	raw, gz := tinyJFR(t)
	snap := &jfrpprof.LabelsSnapshot{Strings: map[int64]string{1: "region", 2: "eu"}, Contexts: map[int64]*jfrpprof.Context{7: {Labels: map[int64]int64{1: 2}}}}
	labels, err := snap.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	mp, mpType := jfrMultipart(t, map[string][]byte{"jfr": gz, "labels": gzipBytes(labels)})
	mpRaw, mpRawType := jfrMultipart(t, map[string][]byte{"jfr": raw, "labels": labels})
	mpNoLabels, mpNoLabelsType := jfrMultipart(t, map[string][]byte{"jfr": raw})
	const q = "name=shop{env=prod}&format=jfr&from=1700000000&until=1700000010"
	for _, tc := range []struct {
		name, contentType string
		body              []byte
	}{
		{"raw", "application/octet-stream", raw},
		{"gzipped", "application/octet-stream", gz},
		{"multipart gzipped parts", mpType, mp},
		{"multipart raw parts", mpRawType, mpRaw},
		{"multipart without labels", mpNoLabelsType, mpNoLabels},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseJFRRequest(t, q, tc.contentType, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if r.Format != FormatJFR || r.Profile != nil {
				t.Fatalf("format %q, pprof body %d bytes", r.Format, len(r.Profile))
			}
			var names []string
			for _, d := range r.Profiles {
				n, _ := labelValue(d.Labels, "__name__")
				names = append(names, n)
				if spy, _ := labelValue(d.Labels, "pyroscope_spy"); spy != "unknown" {
					t.Errorf("%s: pyroscope_spy %q, want unknown (no spyName)", n, spy)
				}
				if _, ok := labelValue(d.Labels, "jfr_event"); ok {
					t.Errorf("%s: jfr_event set for a HotSpot recording (it has no async-profiler event)", n)
				}
				if d.Profile.TimeNanos != 1700000000e9 || d.Profile.DurationNanos != 10e9 {
					t.Errorf("%s: time %d duration %d", n, d.Profile.TimeNanos, d.Profile.DurationNanos)
				}
			}
			if want := []string{"block", "memory", "process_cpu"}; !slices.Equal(names, want) {
				t.Errorf("profiles %v, want %v", names, want)
			}
		})
	}
}

// TestJFRStatusCodes: what Pyroscope answers 422 for (a recording or a
// snapshot it cannot convert, a multipart body without its recording) is
// 422 here too; an empty raw body is a recording without events.
func TestJFRStatusCodes(t *testing.T) {
	raw, _ := tinyJFR(t)
	corrupt := bytes.Clone(raw)
	corrupt[0] = 0
	noJFR, noJFRType := jfrMultipart(t, map[string][]byte{"profile": raw})
	emptyJFR, emptyJFRType := jfrMultipart(t, map[string][]byte{"jfr": {}})
	badLabels, badLabelsType := jfrMultipart(t, map[string][]byte{"jfr": raw, "labels": {0xff, 0xff, 0xff}})
	corruptMP, corruptMPType := jfrMultipart(t, map[string][]byte{"jfr": corrupt})
	badGzip, badGzipType := jfrMultipart(t, map[string][]byte{"jfr": {0x1f, 0x8b, 0, 0}})
	const q = "name=shop&format=jfr"
	for _, tc := range []struct {
		name, contentType string
		body              []byte
		status            int
		want              string
	}{
		{"corrupt raw", "application/octet-stream", corrupt, 422, "invalid JFR recording"},
		{"corrupt multipart", corruptMPType, corruptMP, 422, "invalid chunk magic"},
		{"truncated", "application/octet-stream", raw[:len(raw)/3], 422, "invalid JFR recording"},
		{"no jfr part", noJFRType, noJFR, 422, "no jfr part"},
		{"empty jfr part", emptyJFRType, emptyJFR, 422, "jfr part is empty"},
		{"bad labels", badLabelsType, badLabels, 422, "invalid labels snapshot"},
		{"bad gzip", badGzipType, badGzip, 422, "jfr recording"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseJFRRequest(t, q, tc.contentType, tc.body)
			if err == nil || !strings.Contains(err.Error(), tc.want) || StatusCode(err) != tc.status {
				t.Fatalf("err %v (status %d), want %d %q", err, StatusCode(err), tc.status, tc.want)
			}
		})
	}
	r, err := parseJFRRequest(t, q, "application/octet-stream", nil)
	if err != nil || r.Profiles == nil || len(r.Profiles) != 0 {
		t.Fatalf("empty body: %v, %+v", err, r)
	}
}

func TestJFRSeriesLabels(t *testing.T) {
	raw, _ := tinyJFR(t)
	r, err := parseJFRRequest(t, "name=shop{service_name=svc,__name__=x,__session_id__=s1,env=prod}&format=jfr&spyName=javaspy", "", raw)
	if err != nil {
		t.Fatal(err)
	}
	// The name parameter's reserved labels go, but __session_id__.
	if want := []LabelPair{{"__session_id__", "s1"}, {"env", "prod"}, {"service_name", "svc"}}; !slices.Equal(r.Labels, want) {
		t.Errorf("request labels %v, want %v", r.Labels, want)
	}
	for _, d := range r.Profiles {
		if v, _ := labelValue(d.Labels, "app_name"); v != "shop" {
			t.Errorf("app_name %q, want shop (service_name was given)", v)
		}
		if v, _ := labelValue(d.Labels, "pyroscope_spy"); v != "javaspy" {
			t.Errorf("pyroscope_spy %q", v)
		}
		if d.Profile.TimeNanos != 0 {
			t.Errorf("no from: time %d, want 0 (stamped on arrival)", d.Profile.TimeNanos)
		}
	}
	r = &Request{AppName: "shop", SpyName: "javaspy"}
	if got, want := r.jfrSeriesLabels("wall", "itimer"), []LabelPair{{"__name__", "wall"}, {"pyroscope_spy", "javaspy"}, {"jfr_event", "itimer"}}; !slices.Equal(got, want) {
		t.Errorf("jfrSeriesLabels = %v, want %v", got, want)
	}
}

func TestJFRFormatParameter(t *testing.T) {
	if f, err := ParseFormat(" JFR "); err != nil || f != FormatJFR {
		t.Fatalf("ParseFormat(JFR) = %q, %v", f, err)
	}
	if !slices.Contains(SupportedFormats, "jfr") {
		t.Fatalf("SupportedFormats %v lacks jfr", SupportedFormats)
	}
	if partName(FormatJFR) != "jfr" {
		t.Fatalf("partName(jfr) = %q", partName(FormatJFR))
	}
}
