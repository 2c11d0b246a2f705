package querier

import "net/http"

type httpHeader = http.Header
