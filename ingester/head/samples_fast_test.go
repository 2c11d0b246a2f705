package head

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// sumsOracle is what SumSamples and CheckSamples must agree with: DecodeSamples.
func sumsOracle(b []byte, nodes uint32) (map[uint32]int64, error) {
	out := map[uint32]int64{}
	bad := false
	err := DecodeSamples(b, func(st uint32, v int64) {
		if st >= nodes {
			bad = true
		}
		out[st] += v
	})
	if err == nil && bad {
		err = errStackRange
	}
	return out, err
}

func checkFast(t *testing.T, b []byte, nodes uint32) {
	t.Helper()
	want, werr := sumsOracle(b, nodes)
	if err := CheckSamples(b, nodes); (err == nil) != (werr == nil) || (errors.Is(werr, errStackRange) && !errors.Is(err, errStackRange)) {
		t.Fatalf("CheckSamples(%x) = %v, DecodeSamples says %v", b, err, werr)
	}
	sums, seen := make([]int64, nodes), make([]uint64, (nodes+63)/64)
	_, err := SumSamples(b, sums, seen, nil)
	if (err == nil) != (werr == nil) {
		t.Fatalf("SumSamples(%x) = %v, DecodeSamples says %v", b, err, werr)
	}
	if err != nil {
		return
	}
	stacks, values := DrainSums(sums, seen, nil, nil)
	if len(stacks) != len(want) {
		t.Fatalf("SumSamples(%x): %d stacks, want %d", b, len(stacks), len(want))
	}
	for i, st := range stacks {
		if want[st] != values[i] {
			t.Fatalf("SumSamples(%x): stack %d = %d, want %d", b, st, values[i], want[st])
		}
	}
}

func TestFastDecodersAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for iter := 0; iter < 2000; iter++ {
		n := rng.IntN(40)
		var stacks []uint32
		var values []int64
		st := uint32(0)
		for i := 0; i < n; i++ {
			st += 1 + uint32(rng.IntN(1<<uint(rng.IntN(20))))
			stacks = append(stacks, st)
			switch rng.IntN(4) {
			case 0:
				values = append(values, math.MinInt64+rng.Int64N(3))
			case 1:
				values = append(values, rng.Int64N(100)-50)
			default:
				values = append(values, rng.Int64()>>uint(rng.IntN(63)))
			}
		}
		b := EncodeSamples(nil, stacks, values)
		nodes := st + 1
		if rng.IntN(5) == 0 && st > 0 {
			nodes = st // the last stack out of range
		}
		checkFast(t, b, nodes)
		// Truncated, a flipped byte, trailing bytes, an overlong varint.
		if len(b) > 0 {
			checkFast(t, b[:rng.IntN(len(b))], nodes)
			c := append([]byte(nil), b...)
			c[rng.IntN(len(c))] ^= byte(1 << uint(rng.IntN(8)))
			checkFast(t, c, nodes)
		}
		checkFast(t, append(append([]byte(nil), b...), 0xff, 0xff, 0x01), nodes)
		long := binary.AppendUvarint(nil, 1)
		long = append(long, 0)
		long = append(long, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
		checkFast(t, long, nodes)
	}
}

func FuzzFastDecoders(f *testing.F) {
	f.Add(EncodeSamples(nil, []uint32{1, 5, 300}, []int64{-1, 1 << 40, 7}), uint16(301))
	f.Add([]byte{3, 1, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 2, 2}, uint16(10))
	f.Fuzz(func(t *testing.T, b []byte, nodes uint16) {
		checkFast(t, b, uint32(nodes)+1)
	})
}
