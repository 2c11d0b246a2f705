package s3test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	c := s.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	put := func(name string) error {
		_, err := c.PutObject(ctx, s.Bucket, name, bytes.NewReader([]byte(name)), int64(len(name)), minio.PutObjectOptions{})
		return err
	}
	if err := put("a/b"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if s.Running() {
		t.Fatal("running after Stop")
	}
	short, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	_, err := c.PutObject(short, s.Bucket, "x", bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{})
	cancel2()
	if err == nil {
		t.Fatal("put succeeded while the server was stopped")
	}
	s.Restart()
	obj, err := c.GetObject(ctx, s.Bucket, "a/b", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("object written before the restart: %v", err)
	}
	if string(b) != "a/b" {
		t.Fatalf("got %q", b)
	}
}
