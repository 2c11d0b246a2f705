package normalize

import (
	"encoding/hex"
	"strings"
	"unicode/utf8"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// Check refuses what Pyroscope's profile validation refuses and Hearth's
// reference checks (symdb) let through: a function with id 0 (older .NET
// agents; /ingest repairs those first, see RepairDotnetFunctionIDs), a
// sample label whose key or value is outside the string table, and a sample
// type whose name contains "-" (also .NET; /ingest renames it first). For
// every client: push.v1 answers these with 400, /ingest with 422.
func Check(p *googlev1.Profile) error {
	for _, f := range p.Function {
		if f.Id == 0 {
			return errorf("function id is 0")
		}
	}
	n := int64(len(p.StringTable))
	for i, s := range p.Sample {
		for _, l := range s.Label {
			if l.Key < 0 || l.Key >= n || l.Str < 0 || l.Str >= n {
				return errorf("sample label string index out of range (sample %d: key %d, value %d; the string table has %d)", i, l.Key, l.Str, n)
			}
		}
	}
	for _, st := range p.SampleType {
		if st.Type >= 0 && st.Type < n && strings.Contains(p.StringTable[st.Type], "-") {
			return errorf("sample type %q contains -", p.StringTable[st.Type])
		}
	}
	return nil
}

// CheckUTF8 refuses a profile with a string that is not valid UTF-8, as
// Pyroscope does for every client (protobuf strings must be UTF-8; Hearth can
// instead store them with U+FFFD: Config.SanitizeInvalidUTF8).
func CheckUTF8(p *googlev1.Profile) error {
	for i, s := range p.StringTable {
		if !utf8.ValidString(s) {
			b := []byte(s)
			if len(b) > 64 {
				b = b[:64]
			}
			return errorf("invalid utf8 string %d, hex: %s", i, hex.EncodeToString(b))
		}
	}
	return nil
}
