package app

import (
	"io"
	"mime/multipart"
	"strconv"
)

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func multipartWriter(w io.Writer) *multipart.Writer { return multipart.NewWriter(w) }
