// Package tenant resolves the tenant of a request, as Pyroscope does: the
// X-Scope-OrgID header, or "anonymous" when multitenancy is off.
package tenant

import (
	"errors"
	"fmt"
	"net/http"
)

// Header carries the tenant id.
const Header = "X-Scope-OrgID"

// Anonymous is every request's tenant when multitenancy is off.
const Anonymous = "anonymous"

// ErrMissing is returned when multitenancy is on and the header is absent.
var ErrMissing = errors.New("no tenant: multitenancy is enabled and the request has no " + Header + " header")

// MaxLength bounds a tenant id (it becomes a directory and a bucket prefix).
const MaxLength = 150

// FromHeader returns the tenant for a request's headers.
func FromHeader(h http.Header, multitenancy bool) (string, error) {
	if !multitenancy {
		return Anonymous, nil
	}
	id := h.Get(Header)
	if id == "" {
		return "", ErrMissing
	}
	if err := Validate(id); err != nil {
		return "", err
	}
	return id, nil
}

// Validate checks that a tenant id is safe as a path segment.
func Validate(id string) error {
	if len(id) > MaxLength {
		return fmt.Errorf("tenant id is %d characters, longer than the limit of %d", len(id), MaxLength)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("tenant id %q is not allowed", id)
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '!', c == '-', c == '_', c == '.', c == '*', c == '\'', c == '(', c == ')':
		default:
			return fmt.Errorf("tenant id %q contains %q: allowed are letters, digits and !-_.*'()", id, c)
		}
	}
	return nil
}
