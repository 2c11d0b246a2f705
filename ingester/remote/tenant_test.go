package remote

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/querier"
)

// The replica read endpoints validate the tenant named in the body as the
// public API validates the header: an invalid or federated id is a 400.
func TestSelectHandlerValidatesTenant(t *testing.T) {
	h := NewSelectHandler(querier.HeadSource{Head: head.New(head.Options{})}, HandlerOptions{})
	for _, path := range []string{SelectPath, SeriesLabelsPath} {
		for body, want := range map[string]string{
			`{"tenant":"tenant-a|tenant-b"}`: "federated ids (a|b) are not supported",
			`{"tenant":""}`:                  "tenant id is empty",
			`{"tenant":"../x"}`:              "contains '/'",
			`{}`:                             "tenant id is empty",
		} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), want) {
				t.Errorf("%s %s: %d %q, want 400 containing %q", path, body, rec.Code, rec.Body.String(), want)
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"tenant":"tenant-a"}`)))
		if rec.Code != http.StatusOK {
			t.Errorf("%s valid tenant: %d %q", path, rec.Code, rec.Body.String())
		}
	}
}
