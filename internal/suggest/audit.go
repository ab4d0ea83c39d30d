package suggest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// maxLine is the longest audit line read; a gateway writes a few hundred
// bytes. A longer line is reported as malformed and skipped.
const maxLine = 64 << 10

// LineError is a malformed audit line: skipped, and reported with its
// position.
type LineError struct {
	File string
	Line int
	Msg  string
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// ReadStats says what ReadAudit read.
type ReadStats struct {
	Lines     int // every line, blank ones included
	Denials   int // flow.audit and flow.deny records passed to add
	Malformed int // lines reported to bad
}

// record is the part of an audit record suggest reads (docs/design.md, "The
// audit log").
type record struct {
	Time     time.Time `json:"time"`
	Event    string    `json:"event"`
	Identity string    `json:"identity"`
	Service  string    `json:"service"`
	Proto    string    `json:"proto"`
	Port     int       `json:"port"`
	Rule     string    `json:"rule"`
	Reason   string    `json:"reason"`
}

var (
	markAudit = []byte(`"flow.audit"`)
	markDeny  = []byte(`"flow.deny"`)
)

// ReadAudit reads a wardgate audit log (JSON lines) from r a line at a
// time, never the whole of it, and passes add every flow.audit and
// flow.deny record whose reason is the policy's (no-rule, deny-rule,
// outside-time-window, expired): the gateway's own refusals of allowed
// flows (caps, an unreachable site) and unknown identities are not about
// rules. A line that is not a JSON object, or a denial record without a
// time, identity, service or known protocol, goes to bad as a *LineError
// naming name and the line number, and is skipped. Only a read error
// stops it.
//
// Only the lines that mention one of the two events are decoded; the
// others (allows, ends, DNS) are checked to be one JSON object's braces,
// which catches the usual damage (a line cut short by a crash) at a
// fraction of the cost of decoding.
func ReadAudit(r io.Reader, name string, add func(Observation), bad func(*LineError)) (ReadStats, error) {
	var st ReadStats
	br := bufio.NewReaderSize(r, 256<<10)
	report := func(format string, args ...any) {
		st.Malformed++
		bad(&LineError{File: name, Line: st.Lines, Msg: fmt.Sprintf(format, args...)})
	}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxLine {
			st.Lines++
			if err = skipLine(br, err); err != nil && err != io.EOF {
				return st, err
			}
			report("line longer than %d bytes", maxLine)
			if err == io.EOF {
				return st, nil
			}
			continue
		}
		if len(line) > 0 {
			st.Lines++
			if o, ok := parseLine(line, report); ok {
				st.Denials++
				add(o)
			}
		}
		if err == io.EOF {
			return st, nil
		}
		if err != nil {
			return st, fmt.Errorf("%s: %w", name, err)
		}
	}
}

// skipLine reads past the rest of a line that did not fit the buffer.
func skipLine(br *bufio.Reader, err error) error {
	for errors.Is(err, bufio.ErrBufferFull) {
		_, err = br.ReadSlice('\n')
	}
	return err
}

// parseLine returns the observation a line holds, if it is a denial.
func parseLine(line []byte, report func(string, ...any)) (Observation, bool) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return Observation{}, false
	}
	if !bytes.Contains(line, markAudit) && !bytes.Contains(line, markDeny) {
		if line[0] != '{' || line[len(line)-1] != '}' {
			report("not a JSON object: %s", excerpt(line))
		}
		return Observation{}, false
	}
	var rec record
	if err := json.Unmarshal(line, &rec); err != nil {
		report("not a JSON audit record: %v", err)
		return Observation{}, false
	}
	if rec.Event != "flow.audit" && rec.Event != "flow.deny" {
		return Observation{}, false
	}
	switch rec.Reason {
	case "no-rule", "deny-rule", "outside-time-window", "expired":
	default:
		return Observation{}, false
	}
	o := Observation{Time: rec.Time, Identity: rec.Identity, Service: rec.Service}
	if rec.Reason == "expired" {
		o.ExpiredRule = rec.Rule
	}
	switch rec.Proto {
	case "tcp":
		o.Proto = policy.ProtoTCP
	case "udp":
		o.Proto = policy.ProtoUDP
	case "icmp":
		o.Proto = policy.ProtoICMP
	default:
		report("%s record with proto %q (want tcp, udp or icmp)", rec.Event, rec.Proto)
		return Observation{}, false
	}
	switch {
	case rec.Time.IsZero():
		report("%s record without a time", rec.Event)
		return Observation{}, false
	case rec.Identity == "" || rec.Service == "":
		report("%s record with reason %s but no identity or service", rec.Event, rec.Reason)
		return Observation{}, false
	case rec.Port < 0 || rec.Port > 65535:
		report("%s record with port %d", rec.Event, rec.Port)
		return Observation{}, false
	}
	o.Port = uint16(rec.Port)
	return o, true
}

// excerpt quotes the start of a bad line for a message.
func excerpt(line []byte) string {
	if len(line) > 60 {
		return fmt.Sprintf("%q...", line[:60])
	}
	return fmt.Sprintf("%q", line)
}
