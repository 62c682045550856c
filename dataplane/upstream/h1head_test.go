package upstream

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
)

// wantHead is what readHead should make of a head: the fields the edge
// keeps, and where the next byte to read starts (the body).
type wantHead struct {
	status  int
	cl      int64
	chunked bool
	close   bool
	ct, sid string
	rest    string
}

func TestReadHead(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want wantHead
		err  string // substring of the error; "" for none
	}{
		{name: "json", in: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nMcp-Session-Id: s1\r\n\r\n{}",
			want: wantHead{status: 200, cl: 2, ct: "application/json", sid: "s1", rest: "{}"}},
		{name: "no reason phrase", in: "HTTP/1.1 204\r\n\r\n", want: wantHead{status: 204}},
		{name: "empty reason phrase", in: "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", want: wantHead{status: 404}},
		{name: "bare LF line ends", in: "HTTP/1.1 200 OK\nContent-Length: 1\n\nx", want: wantHead{status: 200, cl: 1, rest: "x"}},
		{name: "case and whitespace", in: "HTTP/1.1 200 OK\r\ncontent-TYPE:\t text/event-stream \r\nmcp-session-id:abc\r\ntransfer-encoding: Chunked\r\n\r\n",
			want: wantHead{status: 200, cl: -1, chunked: true, ct: "text/event-stream", sid: "abc"}},
		{name: "first of repeated kept fields", in: "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nContent-Type: c/d\r\nMcp-Session-Id: 1\r\nMcp-Session-Id: 2\r\nContent-Length: 0\r\n\r\n",
			want: wantHead{status: 200, ct: "a/b", sid: "1"}},
		{name: "other fields skipped", in: "HTTP/1.1 200 OK\r\nDate: Mon\r\nX-Thing: \x80\xff ok\r\nContent-Length: 0\r\n\r\n", want: wantHead{status: 200}},
		{name: "duplicate equal Content-Length", in: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", want: wantHead{status: 200, cl: 3, rest: "abc"}},
		{name: "1xx then 200", in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
			want: wantHead{status: 200, cl: 1, rest: "z"}},
		{name: "connection close", in: "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n", want: wantHead{status: 200, close: true}},
		{name: "no length: until close", in: "HTTP/1.1 200 OK\r\n\r\nall of it", want: wantHead{status: 200, cl: -1, close: true, rest: "all of it"}},
		{name: "HTTP/1.0 closes", in: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", want: wantHead{status: 200, cl: 1, close: true, rest: "x"}},
		{name: "HTTP/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx", want: wantHead{status: 200, cl: 1, rest: "x"}},
		{name: "HTTP/1.0 ignores chunked but closes", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\nx",
			want: wantHead{status: 200, cl: 1, close: true, rest: "x"}},
		{name: "chunked wins over Content-Length, connection not reused", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
			want: wantHead{status: 200, cl: -1, chunked: true, close: true}},
		{name: "304 has no body", in: "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", want: wantHead{status: 304}},

		{name: "empty input", in: "", err: "unexpected EOF"},
		{name: "truncated head", in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n", err: "unexpected EOF"},
		{name: "bad status line", in: "HTTP/1.1 2000 OK\r\n\r\n", err: "bad status line"},
		{name: "status not digits", in: "HTTP/1.1 2x0 OK\r\n\r\n", err: "bad status code"},
		{name: "status out of range", in: "HTTP/1.1 099 Hm\r\n\r\n", err: "out of range"},
		{name: "not HTTP", in: "SSH-2.0-OpenSSH\r\n\r\n", err: "bad status line"},
		{name: "HTTP/2 version", in: "HTTP/2.0 200 OK\r\n\r\n", err: "bad status line"},
		{name: "HTTP/1.2", in: "HTTP/1.2 200 OK\r\n\r\n", err: "unsupported version"},
		{name: "two spaces", in: "HTTP/1.1  200 OK\r\n\r\n", err: "bad status line"},
		{name: "missing colon", in: "HTTP/1.1 200 OK\r\nContent-Length 1\r\n\r\n", err: "without a colon"},
		{name: "space before colon", in: "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n", err: "invalid header name"},
		{name: "empty name", in: "HTTP/1.1 200 OK\r\n: x\r\n\r\n", err: "invalid header name"},
		{name: "obs-fold", in: "HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 0\r\n\r\n", err: "folded"},
		{name: "NUL in value", in: "HTTP/1.1 200 OK\r\nMcp-Session-Id: a\x00b\r\n\r\n", err: "invalid value"},
		{name: "bare CR in value", in: "HTTP/1.1 200 OK\r\nMcp-Session-Id: a\rX-Injected: 1\r\n\r\n", err: "bare CR"},
		{name: "duplicate different Content-Length", in: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", err: "Content-Length both"},
		{name: "Content-Length list", in: "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc", err: "bad Content-Length"},
		{name: "Content-Length sign", in: "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc", err: "bad Content-Length"},
		{name: "Content-Length empty", in: "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", err: "bad Content-Length"},
		{name: "Content-Length huge", in: "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", err: "bad Content-Length"},
		{name: "gzip transfer coding", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", err: "Transfer-Encoding"},
		{name: "two Transfer-Encoding fields", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", err: "Transfer-Encoding"},
		{name: "101", in: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", err: "101"},
		{name: "endless 1xx", in: strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 10), err: "informational"},
		{name: "header too big", in: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", maxHeadBytes) + "\r\n\r\n", err: "larger than"},
		{name: "many small fields too big", in: "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: "+strings.Repeat("b", 1000)+"\r\n", 70) + "\r\n", err: "larger than"},
		{name: "too many fields", in: "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: b\r\n", maxHeadFields+1) + "\r\n", err: "header fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.in), 4096)
			var h respHead
			err := readHead(br, &h)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got error %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rest, _ := io.ReadAll(br)
			got := wantHead{status: h.status, cl: h.contentLength, chunked: h.chunked, close: h.close,
				ct: string(h.contentType()), sid: string(h.sessionID()), rest: string(rest)}
			if got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// A long kept value spanning more than the reader's buffer is read whole,
// and a reused respHead forgets the previous reply's fields.
func TestReadHeadLongLineAndReuse(t *testing.T) {
	sid := strings.Repeat("s", 10000)
	in := "HTTP/1.1 200 OK\r\nMcp-Session-Id: " + sid + "\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n" +
		"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
	br := bufio.NewReaderSize(strings.NewReader(in), 4096)
	var h respHead
	if err := readHead(br, &h); err != nil {
		t.Fatal(err)
	}
	if string(h.sessionID()) != sid || string(h.contentType()) != "application/json" {
		t.Fatalf("session id of %d bytes, content type %q", len(h.sessionID()), h.contentType())
	}
	if err := readHead(br, &h); err != nil {
		t.Fatal(err)
	}
	if h.status != 202 || len(h.sessionID()) != 0 || len(h.contentType()) != 0 {
		t.Fatalf("second reply: status %d, session id %q, content type %q", h.status, h.sessionID(), h.contentType())
	}
}

// FuzzReadHead: readHead never panics, and where both it and
// http.ReadResponse (skipping 1xx, as the edge did) accept a head, they
// agree on the status, the framing and the fields the edge keeps.
func FuzzReadHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nMcp-Session-Id: x\r\n\r\n1\r\na\r\n0\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 3\nContent-Length: 3\n\nabc",
		"HTTP/1.1 304 \r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: \x80\r\n a\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var h respHead
		err := readHead(bufio.NewReaderSize(strings.NewReader(string(in)), 4096), &h)
		if err != nil {
			return
		}
		br := bufio.NewReaderSize(strings.NewReader(string(in)), 4096)
		req := &http.Request{Method: http.MethodPost}
		var resp *http.Response
		for {
			resp, err = http.ReadResponse(br, req)
			if err != nil {
				return
			}
			if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
				break
			}
		}
		if resp.StatusCode != h.status {
			t.Fatalf("status %d, net/http %d", h.status, resp.StatusCode)
		}
		if resp.ContentLength != h.contentLength {
			t.Fatalf("content length %d, net/http %d", h.contentLength, resp.ContentLength)
		}
		if stdChunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"; stdChunked != h.chunked && !bodyless(h.status) {
			t.Fatalf("chunked %v, net/http %v", h.chunked, stdChunked)
		}
		// readHead also refuses to reuse a connection after framing that
		// smells of smuggling, which net/http reads through.
		// (net/http drops both fields once it used them, so look at the
		// input; a 1xx head's fields may count too, a harmless slack.)
		lower := strings.ToLower(string(in))
		hasField := func(name string) bool {
			return strings.Contains(lower, "\n"+name+":") || strings.Contains(lower, "\n"+name+" ")
		}
		suspect := h.chunked && hasField("content-length") || h.minor == 0 && hasField("transfer-encoding")
		if resp.Close != h.close && !(suspect && h.close) {
			t.Fatalf("close %v, net/http %v", h.close, resp.Close)
		}
		if got, want := string(h.contentType()), resp.Header.Get("Content-Type"); got != want {
			t.Fatalf("content type %q, net/http %q", got, want)
		}
		if got, want := string(h.sessionID()), resp.Header.Get("Mcp-Session-Id"); got != want {
			t.Fatalf("session id %q, net/http %q", got, want)
		}
	})
}
