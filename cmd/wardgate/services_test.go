package main

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/wardgate/wardgate/gateway"
)

func TestServices(t *testing.T) {
	dir := exampleCopy(t)
	for _, file := range []string{"gateway.toml", "policy.toml"} {
		code, out, errOut := runCLI("services", "-c", filepath.Join(dir, file))
		if code != 0 {
			t.Fatalf("services -c %s: %d %s", file, code, errOut)
		}
		for _, re := range []string{
			`NAME\s+SITE\s+VIP\s+PORTS\s+DNS`,
			`pacs\s+leeds\s+100\.81\.0\.10\s+8443/tcp,11112/tcp\s+pacs\.nhs\.internal,pacs\.leeds\.nhs\.example`,
			`lab-results\s+york\s+100\.81\.\d+\.\d+\s+8080/tcp\s+lab-results\.nhs\.internal`,
			`nhs-mail\s+-\s+-\s+443/tcp,587/tcp\s+egress \*\*\.nhs\.net`,
		} {
			if !regexpLine(out, re) {
				t.Errorf("services -c %s lacks a line matching %s:\n%s", file, re, out)
			}
		}
	}

	code, out, _ := runCLI("services", "-c", filepath.Join(dir, "gateway.toml"), "--json")
	var list []gateway.ServiceInfo
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
		t.Fatalf("services --json: %d %q", code, out)
	}
	byName := map[string]gateway.ServiceInfo{}
	for _, s := range list {
		byName[s.Name] = s
	}
	ehr := byName["ehr"]
	vip, err := netip.ParseAddr(ehr.VIP)
	if err != nil || !netip.MustParsePrefix("100.81.0.0/16").Contains(vip) || ehr.Site != "leeds" ||
		!slices.Equal(ehr.Ports, []string{"8443/tcp"}) || !slices.Equal(ehr.DNS, []string{"ehr.nhs.internal"}) ||
		!slices.Equal(ehr.Endpoints, []string{"127.0.0.11:8443/tcp", "127.0.0.12:8443/tcp"}) {
		t.Errorf("ehr: %+v", ehr)
	}
	if web := byName["nhs-web"]; web.VIP != "" || web.Site != "" || !slices.Equal(web.Egress, []string{"*.nhs.uk"}) || len(web.DNS) != 0 {
		t.Errorf("nhs-web: %+v", web)
	}
	if len(list) != 7 {
		t.Errorf("%d services, want the example's 7", len(list))
	}

	for _, args := range [][]string{{"services"}, {"services", "-c", "x", "extra"}} {
		if code, _, _ := runCLI(args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	if code, _, errOut := runCLI("services", "-c", filepath.Join(dir, "missing.toml")); code != 1 || errOut == "" {
		t.Errorf("missing file: %d %q", code, errOut)
	}
}

// Endpoints come out in policy.toml's notation, IPv6 in brackets, so that
// they can be pasted back.
func TestServicesEndpointNotation(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.toml")
	os.WriteFile(pol, []byte(`[overlay]
prefix = "10.9.0.0/24"
service_prefix = "10.10.0.0/24"
domain = "t.internal"

[[site]]
name = "a"
key = "LqjzRepy5ts7yPfqc1x2/RKn+vzATGXXQQHpg7DLsTU="
address = "10.9.0.1"

[[service]]
name = "six"
site = "a"
endpoints = ["[fd00::5]:443", "[fd00:1::/64]:8000-8010/udp", "192.168.5.0/24:53/udp"]
`), 0o644)
	code, out, errOut := runCLI("services", "-c", pol, "--json")
	var list []gateway.ServiceInfo
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
		t.Fatalf("services --json: %d %q %s", code, out, errOut)
	}
	want := []string{"[fd00::5]:443/tcp", "[fd00:1::/64]:8000-8010/udp", "192.168.5.0/24:53/udp"}
	if !slices.Equal(list[0].Endpoints, want) {
		t.Fatalf("endpoints %q, want %q", list[0].Endpoints, want)
	}
}
