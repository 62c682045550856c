// Package audit defines the audit event both planes share (DESIGN §6) and its
// canonical encoding: one JSON object per event with the column names of
// audit_events, in a fixed field order, so that an edge, the spool, the
// control plane and a standalone file sink all produce and hash the same bytes.
//
// The encoder is hand-written because it runs once per request on the edge's
// hot path; decoding is off the hot path and uses encoding/json.
package audit

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Decisions.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
)

// Statuses, stored lowercase as DESIGN §6 lists them.
const (
	StatusOK          = "ok"
	StatusError       = "error"
	StatusDenied      = "denied"
	StatusTimeout     = "timeout"
	StatusCancelled   = "cancelled"
	StatusUnavailable = "unavailable"
)

// Transports.
const (
	TransportHTTP  = "http"
	TransportStdio = "stdio"
)

// Event is one audited request. Field names in the encoding are the
// audit_events column names.
type Event struct {
	ID                uuid.UUID `json:"id"`
	TS                time.Time `json:"ts"`
	NodeID            string    `json:"node_id"`
	SessionID         string    `json:"session_id"`
	Principal         string    `json:"principal"`
	Transport         string    `json:"transport"`
	ProtocolVersion   string    `json:"protocol_version"`
	ClientName        string    `json:"client_name"`
	ClientVersion     string    `json:"client_version"`
	Method            string    `json:"method"`
	Backend           string    `json:"backend"`
	Name              string    `json:"name"`
	Decision          string    `json:"decision"`
	Rule              string    `json:"rule"`
	PolicyRevision    int64     `json:"policy_revision"`
	Status            string    `json:"status"`
	Error             string    `json:"error"`
	LatencyUS         int64     `json:"latency_us"`
	UpstreamLatencyUS int64     `json:"upstream_latency_us"`
	RequestBytes      int64     `json:"request_bytes"`
	ResponseBytes     int64     `json:"response_bytes"`
	ArgsSHA256        string    `json:"args_sha256"`
	TraceID           string    `json:"trace_id"`
}

// NewID mints a UUIDv7 (RFC 9562) for an event arriving at t: 48 bits of Unix
// milliseconds then 74 random bits. Unlike uuid.NewV7 it takes no global lock
// (no intra-millisecond monotonic counter), because it runs on every request;
// ordering within a millisecond is not needed since (ts, id) is the key.
func NewID(t time.Time) uuid.UUID {
	var u uuid.UUID
	ms := uint64(t.UnixMilli())
	binary.BigEndian.PutUint64(u[0:8], ms<<16)
	_, _ = rand.Read(u[6:])     // crypto/rand.Read never fails on supported platforms
	u[6] = 0x70 | (u[6] & 0x0f) // version 7
	u[8] = 0x80 | (u[8] & 0x3f) // RFC 9562 variant
	return u
}

// TimeFormat is the canonical timestamp layout: UTC with microseconds, the
// precision Postgres timestamptz keeps, so an event round-trips unchanged.
const TimeFormat = "2006-01-02T15:04:05.000000Z"

// AppendJSON appends the canonical encoding of e (no trailing newline).
func (e *Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"id":"`...)
	var idbuf [36]byte
	encodeUUID(idbuf[:], e.ID)
	dst = append(dst, idbuf[:]...)
	dst = append(dst, `","ts":"`...)
	dst = appendTime(dst, e.TS.UTC().Truncate(time.Microsecond))
	dst = append(dst, '"')
	dst = appendStrField(dst, "node_id", e.NodeID)
	dst = appendStrField(dst, "session_id", e.SessionID)
	dst = appendStrField(dst, "principal", e.Principal)
	dst = appendStrField(dst, "transport", e.Transport)
	dst = appendStrField(dst, "protocol_version", e.ProtocolVersion)
	dst = appendStrField(dst, "client_name", e.ClientName)
	dst = appendStrField(dst, "client_version", e.ClientVersion)
	dst = appendStrField(dst, "method", e.Method)
	dst = appendStrField(dst, "backend", e.Backend)
	dst = appendStrField(dst, "name", e.Name)
	dst = appendStrField(dst, "decision", e.Decision)
	dst = appendStrField(dst, "rule", e.Rule)
	dst = appendIntField(dst, "policy_revision", e.PolicyRevision)
	dst = appendStrField(dst, "status", e.Status)
	dst = appendStrField(dst, "error", e.Error)
	dst = appendIntField(dst, "latency_us", e.LatencyUS)
	dst = appendIntField(dst, "upstream_latency_us", e.UpstreamLatencyUS)
	dst = appendIntField(dst, "request_bytes", e.RequestBytes)
	dst = appendIntField(dst, "response_bytes", e.ResponseBytes)
	dst = appendStrField(dst, "args_sha256", e.ArgsSHA256)
	dst = appendStrField(dst, "trace_id", e.TraceID)
	return append(dst, '}')
}

// DecodeJSON parses one canonical (or any equivalent JSON) event and validates it.
func DecodeJSON(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("decoding audit event: %w", err)
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// Validate checks the invariants the audit_events table enforces, so a bad
// event is refused where it is made rather than failing a whole batch later.
func (e *Event) Validate() error {
	var errs []error
	if e.ID == uuid.Nil {
		errs = append(errs, errors.New("id is empty"))
	} else if e.ID.Version() != 7 {
		errs = append(errs, fmt.Errorf("id %s is not a UUIDv7", e.ID))
	}
	if e.TS.IsZero() {
		errs = append(errs, errors.New("ts is zero"))
	}
	switch e.Decision {
	case DecisionAllow, DecisionDeny:
	default:
		errs = append(errs, fmt.Errorf("decision %q is not allow or deny", e.Decision))
	}
	switch e.Status {
	case StatusOK, StatusError, StatusDenied, StatusTimeout, StatusCancelled, StatusUnavailable:
	default:
		errs = append(errs, fmt.Errorf("status %q is not one of ok, error, denied, timeout, cancelled, unavailable", e.Status))
	}
	if e.Method == "" {
		errs = append(errs, errors.New("method is empty"))
	}
	if e.LatencyUS < 0 || e.UpstreamLatencyUS < 0 || e.RequestBytes < 0 || e.ResponseBytes < 0 {
		errs = append(errs, errors.New("latencies and sizes must not be negative"))
	}
	if e.ArgsSHA256 != "" && !isLowerHex(e.ArgsSHA256, 64) {
		errs = append(errs, fmt.Errorf("args_sha256 %q is not 64 lowercase hex digits", e.ArgsSHA256))
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid audit event %s: %w", e.ID, errors.Join(errs...))
	}
	return nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func appendStrField(dst []byte, key, v string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return appendString(dst, v)
}

func appendIntField(dst []byte, key string, v int64) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return strconv.AppendInt(dst, v, 10)
}

const hexDigits = "0123456789abcdef"

func encodeUUID(dst []byte, u uuid.UUID) {
	j := 0
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j], dst[j+1] = hexDigits[b>>4], hexDigits[b&0xf]
		j += 2
	}
}

// appendTime appends t (UTC, whole microseconds) in TimeFormat. It writes
// the digits itself: AppendFormat parses the layout on every call, which
// was a third of what encoding an event cost. Years AppendFormat would
// write otherwise than as four digits take its path.
func appendTime(dst []byte, t time.Time) []byte {
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, TimeFormat)
	}
	hour, min, sec := t.Clock()
	dst = appendDigits(dst, year, 4)
	dst = append(dst, '-')
	dst = appendDigits(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendDigits(dst, day, 2)
	dst = append(dst, 'T')
	dst = appendDigits(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, min, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, sec, 2)
	dst = append(dst, '.')
	dst = appendDigits(dst, t.Nanosecond()/1000, 6)
	return append(dst, 'Z')
}

// appendDigits appends v (0 <= v < 10^width) as width decimal digits.
func appendDigits(dst []byte, v, width int) []byte {
	n := len(dst)
	for range width {
		dst = append(dst, '0')
	}
	for i := len(dst) - 1; i >= n; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
	return dst
}

// attention is non-zero when one of the eight bytes in w is not
// printable ASCII other than '"' and '\\' (those appendString copies as
// they are). It tests them at once (the has-zero-byte and has-less-than
// tricks of Bit Twiddling Hacks): an event is mostly such bytes, and
// testing each one was half of what encoding an event cost. A byte that
// needs attention always shows; a plain one may show too, which only
// sends it through the byte-at-a-time path.
func attention(w uint64) uint64 {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	quote, bslash := w^(lo*'"'), w^(lo*'\\')
	return w&hi | // >= 0x80: UTF-8 to check
		(w-lo*0x20)&^w&hi | // < 0x20: a control character
		(quote-lo)&^quote&hi | (bslash-lo)&^bslash&hi
}

// plainByte is attention for one byte: true for the bytes appendString
// copies as they are.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does, so the output is always valid JSON.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		for i+8 <= len(s) {
			_ = s[i+7]
			w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
				uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
			if attention(w) != 0 {
				break
			}
			i += 8
		}
		if i == len(s) {
			break
		}
		c := s[i]
		if plainByte[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript consumers of JSON lines.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
