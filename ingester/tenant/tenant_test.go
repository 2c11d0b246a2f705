package tenant

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	valid := []string{"a", "tenant-a", "Team_1.prod", "x!-_.*'()", strings.Repeat("a", MaxLength), "..."}
	for _, id := range valid {
		if err := Validate(id); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", id, err)
		}
	}
	invalid := map[string]string{
		"":                               "empty",
		".":                              "not allowed",
		"..":                             "not allowed",
		strings.Repeat("a", MaxLength+1): "longer than the limit of 150",
		"tenant-a|tenant-b":              "federated ids (a|b) are not supported",
		"a/b":                            `contains '/'`,
		"a b":                            `contains ' '`,
		"é":                              `contains 'é'`,
		"a\x00":                          `contains '\x00'`,
		"../etc":                         `contains '/'`,
	}
	for id, want := range invalid {
		err := Validate(id)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%q) = %v, want an error containing %q", id, err, want)
			continue
		}
		if !IsInvalid(err) {
			t.Errorf("Validate(%q): %T is not an InvalidError", id, err)
		}
	}
}

func TestFromHeader(t *testing.T) {
	h := http.Header{}
	if got, err := FromHeader(h, false); err != nil || got != Anonymous {
		t.Fatalf("multitenancy off: %q %v", got, err)
	}
	h.Set(Header, "a|b")
	if got, err := FromHeader(h, false); err != nil || got != Anonymous {
		t.Fatalf("multitenancy off ignores the header: %q %v", got, err)
	}
	if _, err := FromHeader(http.Header{}, true); !errors.Is(err, ErrMissing) {
		t.Fatalf("no header: %v", err)
	}
	empty := http.Header{}
	empty.Set(Header, "")
	if _, err := FromHeader(empty, true); !errors.Is(err, ErrMissing) {
		t.Fatalf("empty header: %v", err)
	}
	if _, err := FromHeader(h, true); !IsInvalid(err) || !strings.Contains(err.Error(), "federated") {
		t.Fatalf("federated: %v", err)
	}
	two := http.Header{}
	two.Add(Header, "a")
	two.Add(Header, "b")
	if _, err := FromHeader(two, true); !IsInvalid(err) || !strings.Contains(err.Error(), "2 times") {
		t.Fatalf("two headers: %v", err)
	}
	one := http.Header{}
	one.Set(Header, "tenant-a")
	if got, err := FromHeader(one, true); err != nil || got != "tenant-a" {
		t.Fatalf("valid: %q %v", got, err)
	}
}

func FuzzValidate(f *testing.F) {
	for _, s := range []string{"a", "a|b", "..", "tenant-a", "a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if Validate(id) != nil {
			return
		}
		// An accepted id is safe as one path segment.
		if id == "." || id == ".." || strings.ContainsAny(id, "/\\|\x00") || len(id) > MaxLength || id == "" {
			t.Fatalf("accepted %q", id)
		}
	})
}
