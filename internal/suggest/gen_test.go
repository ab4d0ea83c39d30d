package suggest

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// writeSyntheticLog writes about size bytes of audit log in the gateway's
// format, for the example policy: per flow a flow.allow or (one in ten) a
// flow.audit or flow.deny, then a flow.end; a dns.query every few flows.
// Fixed seed: the same bytes every time.
func writeSyntheticLog(w io.Writer, pol *policy.Policy, size int64) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	ids, svcs := pol.Identities(), pol.Services()
	at := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	var n int64
	for flow := 0; n < size; flow++ {
		at = at.Add(time.Duration(r.IntN(40)) * time.Millisecond)
		id, svc := ids[r.IntN(len(ids))], svcs[r.IntN(len(svcs))]
		port := int(svc.Ports[r.IntN(len(svc.Ports))].Lo)
		event, reason := "flow.allow", ""
		switch r.IntN(20) {
		case 0:
			event, reason = "flow.audit", "no-rule"
		case 1:
			event, reason = "flow.deny", "no-rule"
		}
		head := fmt.Sprintf(`{"time":%q,"event":%q,"flow":"f%d","identity":%q,"site":%q,"src":"%s:%d","dst":"%s:%d","service":%q,"proto":"tcp","port":%d`,
			at.Format(time.RFC3339Nano), event, flow, id.Name, id.Site, id.Address, 30000+r.IntN(30000), svc.VIP, port, svc.Name, port)
		line := head + `,"community_id":"1:` + strconv.FormatUint(r.Uint64(), 36) + `"`
		if reason != "" {
			line += `,"reason":"` + reason + `"}` + "\n"
		} else {
			line += `,"rule":"some-rule"}` + "\n" + strings.Replace(head, event, "flow.end", 1) + `,"bytes_in":` + strconv.Itoa(r.IntN(1<<20)) + `,"bytes_out":812,"duration_ms":` + strconv.Itoa(r.IntN(60000)) + "}\n"
		}
		if flow%4 == 0 {
			line += fmt.Sprintf(`{"time":%q,"event":"dns.query","identity":%q,"site":%q,"qname":"%s.nhs.internal","qtype":"A","rcode":"NOERROR","answer":"%s"}`+"\n",
				at.Format(time.RFC3339Nano), id.Name, id.Site, svc.Name, svc.VIP)
		}
		m, err := bw.WriteString(line)
		if err != nil {
			return err
		}
		n += int64(m)
	}
	return bw.Flush()
}

// TestGenerateAuditLog writes the synthetic log of the throughput figure
// in docs/DEVELOPERS.md to $WARDGATE_SUGGEST_LOG ($WARDGATE_SUGGEST_MB
// megabytes, default 1000); without the variable it skips.
func TestGenerateAuditLog(t *testing.T) {
	path := os.Getenv("WARDGATE_SUGGEST_LOG")
	if path == "" {
		t.Skip("set WARDGATE_SUGGEST_LOG=FILE to write the synthetic audit log")
	}
	mb := 1000
	if s := os.Getenv("WARDGATE_SUGGEST_MB"); s != "" {
		var err error
		if mb, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	pol, err := policy.Load("../../configs/example/policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := writeSyntheticLog(f, pol, int64(mb)<<20); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkReadAudit reads 16 MB of the synthetic log into a Collector.
func BenchmarkReadAudit(b *testing.B) {
	pol, err := policy.Load("../../configs/example/policy.toml")
	if err != nil {
		b.Fatal(err)
	}
	var buf strings.Builder
	if err := writeSyntheticLog(&buf, pol, 16<<20); err != nil {
		b.Fatal(err)
	}
	text := buf.String()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		c := New(pol, Options{})
		if _, err := ReadAudit(strings.NewReader(text), "bench", c.Add, func(e *LineError) { b.Fatal(e) }); err != nil {
			b.Fatal(err)
		}
		c.Result()
	}
}
