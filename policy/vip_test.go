package policy

import (
	"fmt"
	"net/netip"
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
