// Package record is the encoding of a write: one push request of one tenant,
// as the WAL stores it and as a distributor sends it to a replica (the
// replica appends the same bytes to its WAL).
package record

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/internal/formatver"
	"github.com/hearth-dev/hearth/internal/varint"
)

// A WAL record is one push request of one tenant, all or nothing:
//
//	version(1) tenant(str) count(uvarint) { id(16) time(varint) labels(uvarint n, n×(str,str)) raw(bytes) }...
//
// where str and bytes are a uvarint length then the bytes. raw is the
// profile as received (gzip or not): replay decodes it again.
//
// The leading version byte is the record's format version
// (formatver.WALRecord): 1 in every release so far. A record of another
// version is refused with a *formatver.Error, never decoded as something else
// or skipped: a WAL replay stops on it, a replica answers the distributor
// with the error.
const recordVersion = 1

// maxPlausibleVersion bounds the leading bytes read as a version: versions
// grow one per format change, so a larger byte is damage or garbage (e.g. a
// body that is no record), not a newer release.
const maxPlausibleVersion = 15

// Entry is one profile of a record.
type Entry struct {
	ID        head.ProfileID
	TimeNanos int64
	Labels    model.Labels
	Raw       []byte
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Encode encodes a tenant's push.
func Encode(tenant string, entries []Entry) []byte {
	n := 16 + len(tenant)
	for _, e := range entries {
		n += 40 + len(e.Raw) + e.Labels.Bytes()
	}
	b := make([]byte, 0, n)
	b = append(b, recordVersion)
	b = appendString(b, tenant)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = append(b, e.ID[:]...)
		b = binary.AppendVarint(b, e.TimeNanos)
		b = binary.AppendUvarint(b, uint64(len(e.Labels)))
		for _, l := range e.Labels {
			b = appendString(b, l.Name)
			b = appendString(b, l.Value)
		}
		b = binary.AppendUvarint(b, uint64(len(e.Raw)))
		b = append(b, e.Raw...)
	}
	return b
}

// ErrCorruptRecord wraps every decoding error of a WAL record.
var ErrCorruptRecord = errors.New("corrupt wal record")

// Decode decodes a record; raw slices alias b.
func Decode(b []byte) (tenant string, entries []Entry, err error) {
	if len(b) == 0 || b[0] == 0 || b[0] > maxPlausibleVersion {
		return "", nil, fmt.Errorf("%w: no record version", ErrCorruptRecord)
	}
	if err := formatver.WALRecord.Check("record", int(b[0])); err != nil {
		return "", nil, err
	}
	d := &varint.Decoder{B: b[1:], Base: ErrCorruptRecord}
	tenant = d.Str("tenant")
	n := d.Count("entries", 18)
	entries = make([]Entry, 0, n)
	for i := 0; i < n && d.Err == nil; i++ {
		var e Entry
		copy(e.ID[:], d.Bytes(16, "profile id"))
		e.TimeNanos = d.Varint("time")
		nl := d.Count("labels", 2)
		e.Labels = make(model.Labels, 0, nl)
		for j := 0; j < nl && d.Err == nil; j++ {
			name := d.Str("label name")
			e.Labels = append(e.Labels, model.Label{Name: name, Value: d.Str("label value")})
		}
		e.Raw = d.Bytes(d.Len("profile length"), "profile")
		entries = append(entries, e)
	}
	if err := d.Done("record"); err != nil {
		return "", nil, err
	}
	return tenant, entries, nil
}
