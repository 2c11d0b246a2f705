package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
)

// A WAL record is one push request of one tenant, all or nothing:
//
//	version(1) tenant(str) count(uvarint) { id(16) time(varint) labels(uvarint n, n×(str,str)) raw(bytes) }...
//
// where str and bytes are a uvarint length then the bytes. raw is the
// profile as received (gzip or not): replay decodes it again.
const recordVersion = 1

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

// EncodeRecord encodes a tenant's push.
func EncodeRecord(tenant string, entries []Entry) []byte {
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

var errShort = errors.New("record truncated")

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Varint(r.b)
	if k <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errShort
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

// DecodeRecord decodes a record; raw slices alias b.
func DecodeRecord(b []byte) (tenant string, entries []Entry, err error) {
	if len(b) == 0 || b[0] != recordVersion {
		return "", nil, fmt.Errorf("unknown record version")
	}
	r := &reader{b: b[1:]}
	tenant = string(r.bytes())
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		return "", nil, errShort
	}
	entries = make([]Entry, 0, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		var e Entry
		if len(r.b) < 16 {
			return "", nil, errShort
		}
		copy(e.ID[:], r.b[:16])
		r.b = r.b[16:]
		e.TimeNanos = r.varint()
		nl := r.uvarint()
		if nl > uint64(len(r.b)) {
			return "", nil, errShort
		}
		e.Labels = make(model.Labels, 0, nl)
		for j := uint64(0); j < nl && r.err == nil; j++ {
			name := string(r.bytes())
			value := string(r.bytes())
			e.Labels = append(e.Labels, model.Label{Name: name, Value: value})
		}
		e.Raw = r.bytes()
		entries = append(entries, e)
	}
	if r.err != nil {
		return "", nil, r.err
	}
	if len(r.b) != 0 {
		return "", nil, fmt.Errorf("%d trailing bytes in record", len(r.b))
	}
	return tenant, entries, nil
}
