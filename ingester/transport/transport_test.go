package transport

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hearth-dev/hearth/internal/formatver"
)

// TestProtocolVersion: a receiver takes requests with no version (the first
// release sends none) and version 1, refuses version 2 with Unimplemented and
// a message saying what to do, and answers with its own version; a sender
// refuses an answer of version 2.
func TestProtocolVersion(t *testing.T) {
	var served int
	srv := httptest.NewServer(Versioned(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served++
		if r.URL.Query().Get("answer") != "" {
			w.Header().Set(ProtocolHeader, r.URL.Query().Get("answer"))
		}
		_, _ = io.WriteString(w, "ok")
	})))
	defer srv.Close()
	post := func(version string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/internal/v1/append", nil)
		if version != "" {
			req.Header.Set(ProtocolHeader, version)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, v := range []string{"", "1"} {
		resp := post(v)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get(ProtocolHeader) != "1" {
			t.Fatalf("version %q: %s, answered version %q", v, resp.Status, resp.Header.Get(ProtocolHeader))
		}
	}
	before := formatver.Refused(formatver.ReplicaProtocol)
	resp := post("2")
	err := ReadError(resp)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(err.Message(), "replica_protocol format version 2 is not supported") ||
		!strings.Contains(err.Message(), "docs/upgrading.md") {
		t.Fatalf("version 2: %s %v", resp.Status, err)
	}
	if served != 2 {
		t.Fatalf("the handler ran %d times, want 2 (not for version 2)", served)
	}
	if got := formatver.Refused(formatver.ReplicaProtocol) - before; got != 1 {
		t.Fatalf("refusals counted %v, want 1", got)
	}

	c := DefaultClient()
	for _, answer := range []string{"", "1"} {
		resp, err := c.Get(srv.URL + "/x?answer=" + answer)
		if err != nil {
			t.Fatalf("answer version %q: %v", answer, err)
		}
		resp.Body.Close()
	}
	_, err2 := c.Get(srv.URL + "/x?answer=2")
	if !errors.Is(err2, formatver.ErrUnsupported) {
		t.Fatalf("answer of version 2: %v", err2)
	}
}
