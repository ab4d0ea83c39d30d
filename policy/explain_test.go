package policy

import (
	"strings"
	"testing"
	"time"
)

func TestExplain(t *testing.T) {
	p := loadExample(t)
	mon := time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)
	sat := time.Date(2026, 3, 7, 9, 30, 0, 0, time.UTC)
	tests := []struct {
		from, to string
		port     uint16
		proto    Proto
		at       time.Time
		want     string
	}{
		{"dr-khan-laptop", "pacs", 8443, ProtoTCP, mon,
			`allow: rule "radiology-reads-pacs" lets group:radiology reach pacs on 8443/tcp (mon-fri 07:00-20:00 Europe/London)`},
		{"dr-khan-laptop", "pacs", 8443, ProtoTCP, sat,
			`deny: rule "radiology-reads-pacs" lets group:radiology reach pacs on 8443/tcp only mon-fri 07:00-20:00 Europe/London, and it is Sat 09:30 GMT there`},
		{"dr-khan-laptop", "pacs", 11112, ProtoTCP, mon,
			`deny: no rule lets dr-khan-laptop (groups clinical-desktop, radiology) reach pacs on 11112/tcp; nearest rule "radiology-reads-pacs" allows group:radiology on 8443/tcp (mon-fri 07:00-20:00 Europe/London)`},
		{"dr-khan-laptop", "pacs", 443, ProtoTCP, mon,
			`deny: pacs does not offer 443/tcp (it offers 8443/tcp, 11112/tcp)`},
		{"ward-12-desktop", "fileshare", 445, ProtoTCP, mon,
			`deny: rule "no-smb" denies * reaching fileshare on 445/tcp`},
		{"admin-finance-01", "ehr", 8443, ProtoTCP, mon,
			`deny: rule "admin-off-ehr" denies group:admin reaching ehr on 8443/tcp; the rule is in roll-out (audit = true), so the gateway lets the flow through and logs it as flow.audit`},
		{"mri-3", "nhs-web", 443, ProtoTCP, mon,
			`deny: no rule lets mri-3 (groups medical-device) reach nhs-web on 443/tcp; nearest rule "staff-web-egress" allows group:clinical-desktop, group:radiology, group:admin to nhs-web on all of its ports`},
		{"it-ops-laptop", "pacs", 0, ProtoICMP, mon,
			`allow: rule "it-manages-everything" lets group:it reach pacs on icmp`},
		{"nobody", "pacs", 443, ProtoTCP, mon, `deny: the source is no known identity`},
		{"mri-3", "nothing", 443, ProtoTCP, mon, `deny: the destination is no service of this policy`},
	}
	for _, tt := range tests {
		d, got := p.Explain(p.Identity(tt.from), p.Service(tt.to), tt.port, tt.proto, tt.at)
		if got != tt.want {
			t.Errorf("%s -> %s:%d/%s:\n got %s\nwant %s", tt.from, tt.to, tt.port, tt.proto, got, tt.want)
		}
		if d != p.Decide(p.Identity(tt.from), p.Service(tt.to), tt.port, tt.proto, tt.at) {
			t.Errorf("Explain's decision differs from Decide's")
		}
		if !strings.HasPrefix(got, d.Verdict.String()+": ") {
			t.Errorf("sentence does not start with the verdict: %s", got)
		}
	}
}
