// Package tenant resolves the tenant of a request, as Pyroscope does: the
// X-Scope-OrgID header, or "anonymous" when multitenancy is off.
//
// Tenant ids are validated like Mimir's: at most 150 characters of
// [a-zA-Z0-9!-_.*'()], and neither "." nor "..". A federated id
// ("tenant-a|tenant-b", what Mimir's tenant federation reads) is rejected
// with its own message: Hearth answers each query from one tenant's data,
// so a request must name exactly one.
package tenant

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Header carries the tenant id.
const Header = "X-Scope-OrgID"

// Anonymous is every request's tenant when multitenancy is off.
const Anonymous = "anonymous"

// ErrMissing is returned when multitenancy is on and the header is absent.
// It is an authentication failure (401); an invalid id is a client error
// (InvalidError, 400).
var ErrMissing = errors.New("no tenant: multitenancy is enabled and the request has no " + Header + " header")

// MaxLength bounds a tenant id (it becomes a directory and a bucket prefix).
const MaxLength = 150

// FederationSeparator joins the tenants of a federated id (Mimir's tenant
// federation). Hearth does not support federated ids.
const FederationSeparator = '|'

// InvalidError is a tenant id that is not allowed: a bad request (400).
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

// IsInvalid reports whether err is (or wraps) an InvalidError.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

// FromHeader returns the tenant for a request's headers: ErrMissing when
// multitenancy is on and there is no header, an *InvalidError when the id
// is not valid or the header is given more than once.
func FromHeader(h http.Header, multitenancy bool) (string, error) {
	if !multitenancy {
		return Anonymous, nil
	}
	vs := h.Values(Header)
	if len(vs) == 0 || (len(vs) == 1 && vs[0] == "") {
		return "", ErrMissing
	}
	if len(vs) > 1 {
		return "", &InvalidError{Msg: fmt.Sprintf("the %s header is given %d times: a request must name exactly one tenant", Header, len(vs))}
	}
	id := vs[0]
	if err := Validate(id); err != nil {
		return "", err
	}
	return id, nil
}

// Validate checks a tenant id (it is used as a path segment and a bucket
// prefix). Every error is an *InvalidError.
func Validate(id string) error {
	if id == "" {
		return &InvalidError{Msg: "tenant id is empty"}
	}
	if len(id) > MaxLength {
		return &InvalidError{Msg: fmt.Sprintf("tenant id is %d characters, longer than the limit of %d", len(id), MaxLength)}
	}
	if id == "." || id == ".." {
		return &InvalidError{Msg: fmt.Sprintf("tenant id %q is not allowed", id)}
	}
	if strings.ContainsRune(id, FederationSeparator) {
		return &InvalidError{Msg: fmt.Sprintf("tenant id %q names several tenants: federated ids (a|b) are not supported, query each tenant separately", truncate(id))}
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '!', c == '-', c == '_', c == '.', c == '*', c == '\'', c == '(', c == ')':
		default:
			return &InvalidError{Msg: fmt.Sprintf("tenant id %q contains %q: allowed are letters, digits and !-_.*'()", truncate(id), c)}
		}
	}
	return nil
}

func truncate(id string) string {
	if len(id) > 64 {
		return id[:64] + "..."
	}
	return id
}
