package block

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/hearth-dev/hearth/internal/varint"
)

// index.bin and symbols.bin share one framing:
//
//	magic [4]byte | version byte | uvarint raw length | zstd(payload) | crc32c [4]byte (little endian)
//
// The CRC (Castagnoli) covers every byte before it. The payload is a sequence
// of uvarint/varint coded columns, described where each file is encoded.

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt wraps every error a decoder returns for bytes it cannot trust.
var ErrCorrupt = errors.New("corrupt block file")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

var zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))

func frame(magic string, payload []byte) []byte {
	out := make([]byte, 0, len(payload)/3+32)
	out = append(out, magic...)
	out = append(out, FormatVersion)
	out = binary.AppendUvarint(out, uint64(len(payload)))
	out = zenc.EncodeAll(payload, out)
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, crcTable))
}

// unframe checks the frame and returns the payload, refusing payloads larger than maxRaw.
func unframe(magic string, b []byte, maxRaw int) ([]byte, error) {
	if len(b) < len(magic)+1+1+4 {
		return nil, corrupt("%s: %d bytes is too short", magic, len(b))
	}
	if string(b[:4]) != magic {
		return nil, corrupt("bad magic %q, want %q", b[:4], magic)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if got := crc32.Checksum(body, crcTable); got != sum {
		return nil, corrupt("%s: checksum %08x, want %08x", magic, got, sum)
	}
	if v := body[4]; v != FormatVersion {
		return nil, corrupt("%s: format version %d, this build reads %d", magic, v, FormatVersion)
	}
	raw, n := binary.Uvarint(body[5:])
	if n <= 0 || raw > uint64(maxRaw) {
		return nil, corrupt("%s: bad or too large payload length", magic)
	}
	dec, err := zstd.NewReader(bytes.NewReader(body[5+n:]), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(maxRaw)+1<<20))
	if err != nil {
		return nil, corrupt("%s: %v", magic, err)
	}
	defer dec.Close()
	out := make([]byte, raw)
	if _, err := io.ReadFull(dec, out); err != nil {
		return nil, corrupt("%s: payload: %v", magic, err)
	}
	var one [1]byte
	if k, _ := dec.Read(one[:]); k != 0 {
		return nil, corrupt("%s: payload longer than its declared %d bytes", magic, raw)
	}
	return out, nil
}

// dec reads varint columns with bounds checks; the first error sticks.
type dec = varint.Decoder
