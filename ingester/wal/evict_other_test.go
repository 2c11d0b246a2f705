//go:build !(linux && (amd64 || arm64))

package wal

import "testing"

func evict(b *testing.B, path string) { b.Skip("page cache eviction not implemented on this platform") }
