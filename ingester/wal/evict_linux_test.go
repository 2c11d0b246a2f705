//go:build linux && (amd64 || arm64)

package wal

import (
	"os"
	"syscall"
	"testing"
)

// evict drops a file's clean pages from the page cache.
func evict(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const posixFadvDontneed = 4
	if _, _, e := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, posixFadvDontneed, 0, 0); e != 0 {
		b.Skipf("fadvise: %v", e)
	}
}
