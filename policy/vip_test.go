package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
)

func vipPolicy(t *testing.T, prefix string, services ...string) (*Policy, error) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[overlay]\nprefix = \"100.80.0.0/16\"\nservice_prefix = %q\ndomain = \"x.internal\"\n", prefix)
	fmt.Fprintf(&b, "[[site]]\nname = \"s\"\nkey = %q\naddress = \"100.80.0.1\"\n", testKey(1))
	for i, s := range services {
		name, vip, _ := strings.Cut(s, "=")
		fmt.Fprintf(&b, "[[service]]\nname = %q\nsite = \"s\"\nendpoints = [\"127.1.%d.%d:443\"]\n", name, i/256, i%256)
		if vip != "" {
			fmt.Fprintf(&b, "vip = %q\n", vip)
		}
	}
	return Parse("vip.toml", []byte(b.String()))
}

func vips(p *Policy) map[string]netip.Addr {
	m := map[string]netip.Addr{}
	for _, s := range p.Services() {
		m[s.Name] = s.VIP
	}
	return m
}

func TestVIPAllocation(t *testing.T) {
	names := []string{"pacs", "ehr", "lab", "print", "files", "web"}
	p, err := vipPolicy(t, "100.81.0.0/16", names...)
	if err != nil {
		t.Fatal(err)
	}
	first := vips(p)
	sp := netip.MustParsePrefix("100.81.0.0/16")
	seen := map[netip.Addr]bool{}
	for n, a := range first {
		if !sp.Contains(a) || a == sp.Addr() || a == netip.MustParseAddr("100.81.255.255") {
			t.Errorf("%s: VIP %s not a usable host of %s", n, a, sp)
		}
		if seen[a] {
			t.Errorf("%s: VIP %s given twice", n, a)
		}
		seen[a] = true
	}

	// Stable: the same in any order, and when services come and go.
	rev := append([]string(nil), names...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	p2, err := vipPolicy(t, "100.81.0.0/16", append(rev[1:], "dicom-router", "radiology-ai")...)
	if err != nil {
		t.Fatal(err)
	}
	for n, a := range vips(p2) {
		if old, ok := first[n]; ok && old != a {
			t.Errorf("%s: VIP moved from %s to %s", n, old, a)
		}
	}

	// A fixed VIP is never handed to another service: fix one service on
	// the address the allocator picks for "pacs".
	p3, err := vipPolicy(t, "100.81.0.0/16", "pacs", "ehr="+first["pacs"].String())
	if err != nil {
		t.Fatal(err)
	}
	if got := vips(p3); got["ehr"] != first["pacs"] || got["pacs"] == first["pacs"] || !got["pacs"].IsValid() {
		t.Errorf("fixed VIP clash: %v", got)
	}
}

func TestVIPSmallPrefix(t *testing.T) {
	// A /30 has two usable hosts: .1 and .2.
	p, err := vipPolicy(t, "100.81.0.0/30", "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	got := vips(p)
	want := map[netip.Addr]bool{netip.MustParseAddr("100.81.0.1"): true, netip.MustParseAddr("100.81.0.2"): true}
	if !want[got["a"]] || !want[got["b"]] || got["a"] == got["b"] {
		t.Errorf("VIPs in a /30: %v", got)
	}
	_, err = vipPolicy(t, "100.81.0.0/30", "a", "b", "c")
	if err == nil || !strings.Contains(err.Error(), "vip.toml:3:1: overlay: service_prefix 100.81.0.0/30 has 2 usable addresses, too few for 3 services") {
		t.Errorf("full prefix: %v", err)
	}
}

func TestVIPIPv6(t *testing.T) {
	p, err := vipPolicy(t, "fd00:81::/64", "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	sp := netip.MustParsePrefix("fd00:81::/64")
	for n, a := range vips(p) {
		if !sp.Contains(a) || a == sp.Addr() {
			t.Errorf("%s: %s", n, a)
		}
	}
}

func TestEgressHasNoVIP(t *testing.T) {
	p := loadExample(t)
	if p.Service("nhs-web").VIP.IsValid() {
		t.Error("egress service has a VIP")
	}
	if p.Service("pacs").VIP != netip.MustParseAddr("100.81.0.10") {
		t.Error("fixed VIP not kept")
	}
}

// lanPolicy is a policy with two sites, a peer and LAN identities at york.
func lanPolicy(t *testing.T, extra string) *Policy {
	t.Helper()
	text := fmt.Sprintf(`[overlay]
prefix = "100.80.0.0/24"
service_prefix = "100.81.0.0/16"
domain = "nhs.internal"
[[site]]
name = "leeds"
key = %q
address = "100.80.0.1"
[[site]]
name = "york"
key = %q
address = "100.80.0.2"
[[identity]]
name = "nurse"
key = %q
address = "100.80.0.7"
site = "york"
[[identity]]
name = "mri"
source = "192.168.20.13/32"
site = "york"
[[identity]]
name = "ct"
source = "192.168.20.14"
address = "100.80.0.9"
site = "york"
[[service]]
name = "pacs"
site = "york"
vip = "100.81.0.5"
endpoints = ["10.1.0.0/24:443", "10.1.0.7:104", "10.1.0.7:443", "[fd00::7]:443"]
[[service]]
name = "ehr"
site = "leeds"
endpoints = ["10.2.0.1:443"]
[[service]]
name = "web"
egress = ["*.nhs.uk"]
ports = ["443/tcp"]
`, testKey(1), testKey(2), testKey(3)) + extra
	p, err := Parse("policy.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLANAddresses(t *testing.T) {
	p := lanPolicy(t, "")
	mri, ct := p.Identity("mri"), p.Identity("ct")
	if ct.Address != netip.MustParseAddr("100.80.0.9") {
		t.Errorf("fixed LAN address: %v", ct.Address)
	}
	if !mri.IsLAN() || !ct.IsLAN() || p.Identity("nurse").IsLAN() {
		t.Error("IsLAN no longer means named by a LAN source")
	}
	pfx := p.Overlay().Prefix
	if !mri.Address.IsValid() || !pfx.Contains(mri.Address) || mri.Address == pfx.Addr() || mri.Address == netip.MustParseAddr("100.80.0.255") {
		t.Fatalf("derived LAN address %v not a host of %s", mri.Address, pfx)
	}
	for _, a := range []string{"100.80.0.1", "100.80.0.2", "100.80.0.7", "100.80.0.9"} {
		if mri.Address.String() == a {
			t.Errorf("derived address %s collides with a fixed one", a)
		}
	}
	for _, id := range p.Identities() {
		if got := p.IdentityByAddr(id.Address); got != id {
			t.Errorf("IdentityByAddr(%s) = %v, want %s", id.Address, got, id.Name)
		}
	}

	// Stable: the same with a LAN identity added later in name order, and
	// moved only when a fixed address takes it.
	more := "[[identity]]\nname = \"xray\"\nsource = \"192.168.20.15\"\nsite = \"york\"\n"
	if a := lanPolicy(t, more).Identity("mri").Address; a != mri.Address {
		t.Errorf("adding a LAN identity moved mri from %s to %s", mri.Address, a)
	}
	taken := fmt.Sprintf("[[identity]]\nname = \"porter\"\nkey = %q\naddress = %q\nsite = \"leeds\"\n", testKey(4), mri.Address)
	if a := lanPolicy(t, taken).Identity("mri").Address; a == mri.Address || !a.IsValid() {
		t.Errorf("a fixed address %s did not move the derived one (got %s)", mri.Address, a)
	}
}

func TestLANAddressesFillPrefix(t *testing.T) {
	// A /29 has 6 hosts: 2 sites, and 4 LAN identities fill it exactly.
	text := fmt.Sprintf("[overlay]\nprefix = \"100.80.0.0/29\"\nservice_prefix = \"100.81.0.0/16\"\ndomain = \"x.internal\"\n"+
		"[[site]]\nname = \"a\"\nkey = %q\naddress = \"100.80.0.1\"\n[[site]]\nname = \"b\"\nkey = %q\naddress = \"100.80.0.2\"\n", testKey(1), testKey(2))
	for i := range 4 {
		text += fmt.Sprintf("[[identity]]\nname = \"lan%d\"\nsource = \"10.9.0.%d\"\nsite = \"a\"\n", i, i+1)
	}
	p, err := Parse("policy.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for _, id := range p.Identities() {
		if seen[id.Address] || id.Address.String() == "100.80.0.7" || id.Address.String() == "100.80.0.0" {
			t.Errorf("%s got %s", id.Name, id.Address)
		}
		seen[id.Address] = true
	}
	_, err = Parse("policy.toml", []byte(text+"[[identity]]\nname = \"lan9\"\nsource = \"10.9.0.9\"\nsite = \"a\"\n"))
	if got := fmt.Sprint(err); got != `policy.toml:2:1: overlay: prefix 100.80.0.0/29 has 6 usable addresses, too few for 7 sites and identities` {
		t.Errorf("full prefix: %s", got)
	}
}

func TestSiteRoutes(t *testing.T) {
	p := lanPolicy(t, "")
	mri := p.Identity("mri").Address
	want := []string{"10.1.0.0/24", "10.1.0.7/32", "100.80.0.2/32", "100.80.0.7/32", "100.80.0.9/32", mri.String() + "/32", "100.81.0.5/32", "fd00::7/128"}
	sort.Slice(want, func(i, j int) bool {
		return comparePrefix(netip.MustParsePrefix(want[i]), netip.MustParsePrefix(want[j])) < 0
	})
	if got := fmt.Sprint(p.SiteRoutes("york")); got != fmt.Sprint(want) {
		t.Errorf("SiteRoutes(york) = %s\nwant %s", got, want)
	}
	ehr := p.Service("ehr").VIP
	if got, want := fmt.Sprint(p.SiteRoutes("leeds")), fmt.Sprintf("[10.2.0.1/32 100.80.0.1/32 %s/32]", ehr); got != want {
		t.Errorf("SiteRoutes(leeds) = %s, want %s", got, want)
	}
	if p.SiteRoutes("nowhere") != nil {
		t.Error("unknown site has routes")
	}
}
