package policy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// baseTOML is a small valid policy of 22 lines; cases append from line 23.
var baseTOML = fmt.Sprintf(`[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "nhs.internal"

[[site]]
name = "leeds"
key = %q
address = "100.80.0.1"

[[identity]]
name = "alice"
key = %q
address = "100.80.1.10"
site = "leeds"
groups = ["radiology"]

[[service]]
name = "pacs"
site = "leeds"
endpoints = ["127.0.0.10:443"]

`, testKey(1), testKey(2))

const okRule = "[[rule]]\nname = \"ok\"\nfrom = [\"alice\"]\nto = [\"pacs\"]\n\n"

func problems(err error) []string {
	var le *LoadError
	if !errors.As(err, &le) {
		return []string{"not a LoadError: " + fmt.Sprint(err)}
	}
	var out []string
	for _, p := range le.Problems {
		out = append(out, p.Error())
	}
	return out
}

func TestLoadErrors(t *testing.T) {
	k3 := testKey(3)
	tests := []struct {
		name    string
		replace [2]string // applied to baseTOML
		add     string    // appended from line 23
		want    []string
	}{
		{name: "unknown group", add: "[[rule]]\nname = \"radiology-reads-pacs\"\nfrom = [\"group:radiolgy\"]\nto = [\"pacs\"]\n",
			want: []string{`policy.toml:25:1: rule "radiology-reads-pacs": unknown group "radiolgy" (did you mean "radiology"?)`}},
		{name: "unknown identity site service kind", add: "[[rule]]\nname = \"r\"\nfrom = [\"bob\", \"site:york\", \"team:x\"]\nto = [\"ehr\", \"*\"]\n",
			want: []string{
				`policy.toml:25:1: rule "r": unknown identity "bob"`,
				`policy.toml:25:1: rule "r": unknown site "york"`,
				`policy.toml:25:1: rule "r": unknown kind "team" in "team:x" (group:NAME, site:NAME, an identity or "*")`,
				`policy.toml:26:1: rule "r": unknown service "ehr"`,
			}},
		{name: "unknown key in rule", add: "[[rule]]\nname = \"r\"\nfrom = [\"*\"]\nto = [\"*\"]\n  prots = [\"443/tcp\"]\n",
			want: []string{`policy.toml:27:3: rule "r": unknown key "prots" (known: name, action, from, to, ports, when, audit, expires, reason)`}},
		{name: "unknown top-level key", replace: [2]string{"[overlay]", "version = 2\n[overlay]"},
			want: []string{`policy.toml:1:1: unknown key "version" (known: overlay, groups, site, identity, service, rule, test, quarantine)`}},
		{name: "key after a table belongs to it", add: "version = 2\n",
			want: []string{`policy.toml:23:1: service "pacs": unknown key "version" (known: name, site, endpoints, vip, dns, egress, ports)`}},
		{name: "unknown table", add: "[[rules]]\nname = \"x\"\n",
			want: []string{`policy.toml:23:1: unknown key "rules" (known: overlay, groups, site, identity, service, rule, test, quarantine)`}},
		{name: "syntax error", add: "[[rule]]\nname = \"r\nfrom = [\"*\"]\n",
			want: []string{`policy.toml:24:10: syntax error: strings cannot contain newlines (after key "rule.name")`}},
		{name: "wrong type", add: "[[rule]]\nname = \"r\"\nfrom = \"*\"\nto = [\"pacs\"]\nports = [443]\naudit = \"yes\"\n",
			want: []string{
				`policy.toml:25:1: rule "r": from must be an array of strings, not a string`,
				`policy.toml:27:1: rule "r": ports must be an array of strings; it holds an integer`,
				`policy.toml:28:1: rule "r": audit must be true or false, not a string`,
			}},
		{name: "duplicate rule", add: okRule + okRule,
			want: []string{`policy.toml:29:1: rule "ok": duplicate rule name "ok"`}},
		{name: "duplicate identity", add: "[[identity]]\nname = \"alice\"\nkey = \"" + k3 + "\"\naddress = \"100.80.1.11\"\nsite = \"leeds\"\n",
			want: []string{`policy.toml:24:1: identity "alice": duplicate identity name "alice"`}},
		{name: "duplicate service", add: "[[service]]\nname = \"pacs\"\nsite = \"leeds\"\nendpoints = [\"127.0.0.11:443\"]\n",
			want: []string{`policy.toml:24:1: service "pacs": duplicate service name "pacs"`}},
		{name: "duplicate site", add: "[[site]]\nname = \"leeds\"\nkey = \"" + k3 + "\"\naddress = \"100.80.0.2\"\n",
			want: []string{`policy.toml:24:1: site "leeds": duplicate site name "leeds"`}},
		{name: "duplicate address", add: "[[identity]]\nname = \"bob\"\nkey = \"" + k3 + "\"\naddress = \"100.80.1.10\"\nsite = \"leeds\"\n",
			want: []string{`policy.toml:26:1: identity "bob": address 100.80.1.10 is already used by identity "alice"`}},
		{name: "identity on site address", add: "[[identity]]\nname = \"bob\"\nkey = \"" + k3 + "\"\naddress = \"100.80.0.1\"\nsite = \"leeds\"\n",
			want: []string{`policy.toml:26:1: identity "bob": address 100.80.0.1 is already used by site "leeds"`}},
		{name: "address outside prefix", add: "[[identity]]\nname = \"bob\"\nkey = \"" + k3 + "\"\naddress = \"10.0.0.1\"\nsite = \"leeds\"\n",
			want: []string{`policy.toml:26:1: identity "bob": address 10.0.0.1 is outside the overlay prefix 100.80.0.0/16`}},
		{name: "network address", replace: [2]string{`address = "100.80.0.1"`, `address = "100.80.0.0"`},
			want: []string{`policy.toml:9:1: site "leeds": address 100.80.0.0 is the network address of 100.80.0.0/16`}},
		{name: "duplicate key", add: "[[identity]]\nname = \"bob\"\nkey = \"" + testKey(2) + "\"\naddress = \"100.80.1.11\"\nsite = \"leeds\"\n",
			want: []string{`policy.toml:25:1: identity "bob": key ` + testKey(2) + ` is already used by identity "alice"`}},
		{name: "bad keys", add: "[[identity]]\nname = \"bob\"\nkey = \"not-a-key\"\naddress = \"100.80.1.11\"\nsite = \"leeds\"\n[[identity]]\nname = \"carol\"\nkey = \"AAAA\"\naddress = \"100.80.1.12\"\nsite = \"leeds\"\n",
			want: []string{
				`policy.toml:25:1: identity "bob": key is not a WireGuard key (32 bytes, base64): "not-a-key"`,
				`policy.toml:30:1: identity "carol": key is not a WireGuard key (32 bytes, base64): "AAAA"`,
			}},
		{name: "key and source", add: "[[identity]]\nname = \"mri\"\nkey = \"" + k3 + "\"\nsource = \"192.168.20.13/32\"\nsite = \"leeds\"\n",
			want: []string{`policy.toml:26:1: identity "mri": has both source (a LAN device) and key (a WireGuard peer); give one or the other`}},
		{name: "neither key nor source", add: "[[identity]]\nname = \"mri\"\nsite = \"leeds\"\n",
			want: []string{`policy.toml:23:1: identity "mri": needs key and address (a WireGuard peer) or source (a LAN device)`}},
		{name: "key without address", add: "[[identity]]\nname = \"bob\"\nkey = \"" + k3 + "\"\nsite = \"leeds\"\n",
			want: []string{`policy.toml:25:1: identity "bob": a peer identity needs an address as well as a key`}},
		{name: "bad source", add: "[[identity]]\nname = \"mri\"\nsource = \"192.168.20.13/24\"\nsite = \"leeds\"\n[[identity]]\nname = \"ct\"\nsource = \"100.80.9.0/24\"\nsite = \"leeds\"\n",
			want: []string{
				`policy.toml:25:1: identity "mri": source "192.168.20.13/24" has host bits set (did you mean 192.168.20.0/24?)`,
				`policy.toml:29:1: identity "ct": source 100.80.9.0/24 overlaps the overlay prefix 100.80.0.0/16; LAN sources are site LAN addresses`,
			}},
		{name: "same source twice", add: "[[identity]]\nname = \"mri\"\nsource = \"192.168.20.13\"\nsite = \"leeds\"\n[[identity]]\nname = \"ct\"\nsource = \"192.168.20.13/32\"\nsite = \"leeds\"\n",
			want: []string{`policy.toml:29:1: identity "ct": source 192.168.20.13/32 at site "leeds" overlaps identity "mri"'s source 192.168.20.13/32`}},
		{name: "LAN address outside prefix and taken", add: "[[identity]]\nname = \"mri\"\nsource = \"192.168.20.13\"\naddress = \"10.0.0.1\"\nsite = \"leeds\"\n[[identity]]\nname = \"ct\"\nsource = \"192.168.20.14\"\naddress = \"100.80.1.10\"\nsite = \"leeds\"\n",
			want: []string{
				`policy.toml:26:1: identity "mri": address 10.0.0.1 is outside the overlay prefix 100.80.0.0/16`,
				`policy.toml:31:1: identity "ct": address 100.80.1.10 is already used by identity "alice"`,
			}},
		{name: "duplicate address points at the later line", replace: [2]string{"[[site]]", "[[identity]]\nname = \"bob\"\nkey = \"" + k3 + "\"\naddress = \"100.80.1.10\"\nsite = \"leeds\"\n[[site]]"},
			want: []string{`policy.toml:19:1: identity "alice": address 100.80.1.10 is already used by identity "bob"`}},
		{name: "site key after an identity's", replace: [2]string{"[[site]]", "[[identity]]\nname = \"bob\"\nkey = \"" + testKey(1) + "\"\naddress = \"100.80.1.11\"\nsite = \"leeds\"\n[[site]]"},
			want: []string{`policy.toml:13:1: site "leeds": key ` + testKey(1) + ` is already used by identity "bob"`}},
		{name: "site address after an identity's", replace: [2]string{"[[site]]", "[[identity]]\nname = \"bob\"\nkey = \"" + k3 + "\"\naddress = \"100.80.0.1\"\nsite = \"leeds\"\n[[site]]"},
			want: []string{`policy.toml:14:1: site "leeds": address 100.80.0.1 is already used by identity "bob"`}},
		{name: "endpoints of two sites overlap", replace: [2]string{"[[identity]]", "[[site]]\nname = \"york\"\nkey = \"" + k3 + "\"\naddress = \"100.80.0.2\"\n[[identity]]"},
			add: "[[service]]\nname = \"ehr\"\nsite = \"york\"\nendpoints = [\"10.1.0.0/24:80\", \"127.0.0.10:8080\"]\n[[service]]\nname = \"lab\"\nsite = \"leeds\"\nendpoints = [\"10.1.0.0/28:81\"]\n",
			want: []string{
				`policy.toml:34:1: service "lab": endpoint 10.1.0.0/28 overlaps service "ehr"'s endpoint 10.1.0.0/24 at another site ("york", here "leeds"): a destination address must name one site`,
			}},
		{name: "bad endpoints", add: "[[service]]\nname = \"ehr\"\nsite = \"leeds\"\nendpoints = [\"0.0.0.0/0:443\", \"10.0.0.0/8:443\", \"[::]:443\", \"224.0.0.1:443\", \"255.255.255.255:80\", \"100.80.0.5:443\", \"100.81.0.0/24:443\", \"[2001:db8::/32]:443\", \"[2001:db8::/48]:443\", \"127.0.0.1:8443\"]\n",
			want: []string{
				`policy.toml:26:1: service "ehr": endpoint prefix 0.0.0.0/0 is wider than /16 (IPv4) or /48 (IPv6); list the backends`,
				`policy.toml:26:1: service "ehr": endpoint prefix 10.0.0.0/8 is wider than /16 (IPv4) or /48 (IPv6); list the backends`,
				`policy.toml:26:1: service "ehr": endpoint ::/128 is the unspecified address`,
				`policy.toml:26:1: service "ehr": endpoint 224.0.0.1/32 is a multicast address`,
				`policy.toml:26:1: service "ehr": endpoint 255.255.255.255/32 is the broadcast address`,
				`policy.toml:26:1: service "ehr": endpoint 100.80.0.5/32 overlaps the overlay prefix 100.80.0.0/16`,
				`policy.toml:26:1: service "ehr": endpoint 100.81.0.0/24 overlaps the service prefix 100.81.0.0/16 (VIPs)`,
				`policy.toml:26:1: service "ehr": endpoint prefix 2001:db8::/32 is wider than /16 (IPv4) or /48 (IPv6); list the backends`,
			}},
		{name: "overlapping LAN sources", replace: [2]string{"[[identity]]", "[[site]]\nname = \"york\"\nkey = \"" + k3 + "\"\naddress = \"100.80.0.2\"\n[[identity]]"},
			add:  "[[identity]]\nname = \"ward\"\nsource = \"192.168.20.0/24\"\nsite = \"leeds\"\n[[identity]]\nname = \"mri\"\nsource = \"192.168.20.13\"\nsite = \"leeds\"\n[[identity]]\nname = \"york-mri\"\nsource = \"192.168.20.13\"\nsite = \"york\"\n",
			want: []string{`policy.toml:33:1: identity "mri": source 192.168.20.13/32 at site "leeds" overlaps identity "ward"'s source 192.168.20.0/24`}},
		{name: "LAN source on an endpoint", add: "[[identity]]\nname = \"ward\"\nsource = \"10.5.0.0/24\"\nsite = \"leeds\"\n[[service]]\nname = \"ehr\"\nsite = \"leeds\"\nendpoints = [\"10.5.0.7:443\"]\n",
			want: []string{`policy.toml:25:1: identity "ward": source 10.5.0.0/24 overlaps service "ehr"'s endpoint 10.5.0.7/32: an address is a client or a backend, not both`}},
		{name: "long and odd values", add: "[[rule]]\nname = \"" + strings.Repeat("r", 65) + "\"\nfrom = [\"" + strings.Repeat("x", 300) + "\"]\nto = [\"pacs\"]\nreason = \"two\\nlines\"\n" + strings.Repeat("k", 100) + " = 1\n",
			want: []string{
				`policy.toml:24:1: rule "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr"... (65 bytes): name "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr"... (65 bytes) is longer than 64 bytes`,
				`policy.toml:25:1: rule "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr"... (65 bytes): from "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"... (300 bytes) is longer than the 256 bytes accepted`,
				`policy.toml:27:1: rule "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr"... (65 bytes): reason "two\nlines" has a control character; write one line of text`,
				`policy.toml:28:1: rule "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr"... (65 bytes): unknown key "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"... (100 bytes) (known: name, action, from, to, ports, when, audit, expires, reason)`,
			}},
		{name: "unknown identity site", add: "[[identity]]\nname = \"bob\"\nkey = \"" + k3 + "\"\naddress = \"100.80.1.11\"\nsite = \"york\"\n",
			want: []string{`policy.toml:27:1: identity "bob": unknown site "york"`}},
		{name: "vip outside", add: "[[service]]\nname = \"ehr\"\nsite = \"leeds\"\nvip = \"100.82.0.1\"\nendpoints = [\"127.0.0.11:443\"]\n",
			want: []string{`policy.toml:26:1: service "ehr": vip 100.82.0.1 is outside service_prefix 100.81.0.0/16`}},
		{name: "vip broadcast", add: "[[service]]\nname = \"ehr\"\nsite = \"leeds\"\nvip = \"100.81.255.255\"\nendpoints = [\"127.0.0.11:443\"]\n",
			want: []string{`policy.toml:26:1: service "ehr": vip 100.81.255.255 is the network or broadcast address of 100.81.0.0/16`}},
		{name: "vip clash", add: "[[service]]\nname = \"ehr\"\nsite = \"leeds\"\nvip = \"100.81.0.5\"\nendpoints = [\"127.0.0.11:443\"]\n[[service]]\nname = \"lab\"\nsite = \"leeds\"\nvip = \"100.81.0.5\"\nendpoints = [\"127.0.0.12:443\"]\n",
			want: []string{`policy.toml:31:1: service "lab": vip 100.81.0.5 is already service "ehr"'s`}},
		{name: "ports", add: "[[rule]]\nname = \"r\"\nfrom = [\"*\"]\nto = [\"pacs\"]\nports = [\"0/tcp\", \"65536/udp\", \"20-10\", \"80/sctp\", \"x\"]\n",
			want: []string{
				`policy.toml:27:1: rule "r": port 0 out of range 1-65535 in "0/tcp"`,
				`policy.toml:27:1: rule "r": port 65536 out of range 1-65535 in "65536/udp"`,
				`policy.toml:27:1: rule "r": reversed port range "20-10" (20 > 10)`,
				`policy.toml:27:1: rule "r": unknown protocol "sctp" in "80/sctp" (tcp, udp or icmp)`,
				`policy.toml:27:1: rule "r": bad port "x" in "x"`,
			}},
		{name: "endpoints", add: "[[service]]\nname = \"ehr\"\nsite = \"leeds\"\nendpoints = [\"ehr.local:443\", \"127.0.0.11\", \"10.1.2.3/24:80\", \"127.0.0.11:0\"]\n",
			want: []string{
				`policy.toml:26:1: service "ehr": endpoint "ehr.local:443": host "ehr.local" must be an IP address or CIDR`,
				`policy.toml:26:1: service "ehr": endpoint "127.0.0.11" has no port: want ADDR:PORT[/PROTO]`,
				`policy.toml:26:1: service "ehr": endpoint "10.1.2.3/24:80": CIDR "10.1.2.3/24" has host bits set (did you mean 10.1.2.0/24?)`,
				`policy.toml:26:1: service "ehr": endpoint "127.0.0.11:0": port 0 out of range 1-65535 in "0"`,
			}},
		{name: "endpoint clash", add: "[[service]]\nname = \"ehr\"\nsite = \"leeds\"\nendpoints = [\"127.0.0.10:400-500\"]\n",
			want: []string{`policy.toml:26:1: service "ehr": endpoint 127.0.0.10/32:400-500/tcp overlaps service "pacs"'s endpoint 127.0.0.10/32:443/tcp`}},
		{name: "service without site", add: "[[service]]\nname = \"ehr\"\nendpoints = [\"127.0.0.11:443\"]\n",
			want: []string{`policy.toml:23:1: service "ehr": missing site (where its endpoints are)`}},
		{name: "service name not a label", add: "[[service]]\nname = \"EHR.main\"\nsite = \"leeds\"\nendpoints = [\"127.0.0.11:443\"]\n",
			want: []string{`policy.toml:24:1: service "EHR.main": service name "EHR.main" must be a DNS label: label "EHR.main" has 'E' (use lower-case letters, digits, '-' and '_')`}},
		{name: "egress", add: "[[service]]\nname = \"web\"\negress = [\"*.*.nhs.uk\", \"nhs*.uk\", \"*.uk\"]\n[[service]]\nname = \"web2\"\nsite = \"leeds\"\nendpoints = [\"127.0.0.12:443\"]\nports = [\"443/tcp\"]\n",
			want: []string{
				`policy.toml:23:1: service "web": an egress service needs ports, e.g. ports = ["443/tcp"]`,
				`policy.toml:25:1: service "web": FQDN pattern "*.*.nhs.uk": a wildcard may only be the whole first label ("*." or "**.")`,
				`policy.toml:25:1: service "web": FQDN pattern "nhs*.uk": a wildcard may only be the whole first label ("*." or "**.")`,
				`policy.toml:25:1: service "web": FQDN pattern "*.uk": a wildcard needs at least two labels after it`,
				`policy.toml:30:1: service "web2": ports is only for egress services; a service's ports come from its endpoints`,
			}},
		{name: "time windows", add: "[[rule]]\nname = \"a\"\nfrom = [\"*\"]\nto = [\"pacs\"]\nwhen = \"mon-fry 07:00-20:00\"\n" +
			"[[rule]]\nname = \"b\"\nfrom = [\"*\"]\nto = [\"pacs\"]\nwhen = \"mon-fri 07:00-20:00 Europe/Lundon\"\n" +
			"[[rule]]\nname = \"c\"\nfrom = [\"*\"]\nto = [\"pacs\"]\nwhen = \"mon 25:00-26:00\"\n" +
			"[[rule]]\nname = \"d\"\nfrom = [\"*\"]\nto = [\"pacs\"]\nwhen = \"09:00-09:00\"\n" +
			"[[rule]]\nname = \"e\"\nfrom = [\"*\"]\nto = [\"pacs\"]\nwhen = \"sometimes\"\n",
			want: []string{
				`policy.toml:27:1: rule "a": unknown day "fry" in "mon-fry" (mon tue wed thu fri sat sun)`,
				`policy.toml:32:1: rule "b": time window "mon-fri 07:00-20:00 Europe/Lundon": unknown time zone "Europe/Lundon"`,
				`policy.toml:37:1: rule "c": bad time "25:00": out of range`,
				`policy.toml:42:1: rule "d": clock "09:00-09:00" is empty: start and end are the same`,
				`policy.toml:47:1: rule "e": time window "sometimes": want [DAYS] [HH:MM-HH:MM] [ZONE], e.g. "mon-fri 07:00-20:00 Europe/London"`,
			}},
		{name: "12-hour clock", add: "[[rule]]\nname = \"a\"\nfrom = [\"*\"]\nto = [\"pacs\"]\nwhen = \"mon-fri 8am-6pm\"\n[[rule]]\nname = \"b\"\nfrom = [\"*\"]\nto = [\"pacs\"]\nwhen = \"8-18\"\n",
			want: []string{
				`policy.toml:27:1: rule "a": time window "mon-fri 8am-6pm": bad clock "8am-6pm": write HH:MM-HH:MM on the 24-hour clock, e.g. 08:00-18:00`,
				`policy.toml:32:1: rule "b": time window "8-18": bad clock "8-18": write HH:MM-HH:MM on the 24-hour clock, e.g. 08:00-18:00`,
			}},
		{name: "action and audit", add: "[[rule]]\nname = \"r\"\naction = \"permit\"\nfrom = [\"*\"]\nto = [\"pacs\"]\n[[rule]]\nname = \"s\"\nfrom = [\"*\"]\nto = [\"pacs\"]\naudit = true\n",
			want: []string{
				`policy.toml:25:1: rule "r": action "permit" must be "allow" or "deny"`,
				`policy.toml:32:1: rule "s": audit = true is for deny rules (roll-out of a new deny)`,
			}},
		{name: "tests", add: okRule + "[[test]]\nfrom = \"bob\"\nto = \"ehr:443\"\nexpect = \"maybe\"\n[[test]]\nfrom = \"alice\"\nto = \"pacs:99999\"\nexpect = \"deny\"\nreason = \"nope\"\nat = \"yesterday\"\n",
			want: []string{
				`policy.toml:29:1: test 1 (bob -> ehr:443): unknown identity "bob"`,
				`policy.toml:30:1: test 1 (bob -> ehr:443): unknown service "ehr"`,
				`policy.toml:31:1: test 1 (bob -> ehr:443): expect "maybe" must be "allow" or "deny"`,
				`policy.toml:34:1: test 2 (alice -> pacs:99999): port 99999 out of range 1-65535 in "99999" (want SERVICE, SERVICE:PORT[/PROTO] or SERVICE:icmp)`,
				`policy.toml:36:1: test 2 (alice -> pacs:99999): unknown reason "nope" (no-rule, deny-rule, no-service, unknown-identity, outside-time-window, expired)`,
				`policy.toml:37:1: test 2 (alice -> pacs:99999): at "yesterday" is not an RFC 3339 time such as 2026-03-02T09:30:00Z`,
			}},
		{name: "egress with endpoints and vip", add: "[[service]]\nname = \"web\"\negress = [\"*.nhs.uk\"]\nports = [\"443/tcp\", \"icmp\"]\nendpoints = [\"127.0.0.12:443\"]\nvip = \"100.81.0.9\"\n",
			want: []string{
				`policy.toml:26:1: service "web": service ports are tcp or udp; every service answers icmp`,
				`policy.toml:27:1: service "web": an egress service has no endpoints (its addresses are learned from DNS)`,
				`policy.toml:28:1: service "web": an egress service has no vip`,
			}},
		{name: "missing names and site", add: "[[identity]]\nkey = \"" + k3 + "\"\naddress = \"100.80.1.11\"\n[[rule]]\nfrom = [\"*\"]\nto = [\"*\"]\n[[service]]\nname = \"\"\nsite = \"leeds\"\nendpoints = []\n",
			want: []string{
				`policy.toml:23:1: identity 2: missing name`,
				`policy.toml:23:1: identity 2: missing site`,
				`policy.toml:26:1: rule 1: missing name`,
				`policy.toml:30:1: service 2: name is empty`,
				`policy.toml:32:1: service 2: endpoints is empty`,
			}},
		{name: "test assertions", add: okRule + "[[test]]\nfrom = \"alice\"\nto = \"pacs:icmp\"\nexpect = \"allow\"\nreason = \"no-rule\"\nrule = \"nope\"\n",
			want: []string{
				`policy.toml:32:1: test 1 (alice -> pacs:icmp): an allow has no reason; reason is for expect = "deny"`,
				`policy.toml:33:1: test 1 (alice -> pacs:icmp): unknown rule "nope"`,
			}},
		{name: "overlay", replace: [2]string{"service_prefix = \"100.81.0.0/16\"\ndomain = \"nhs.internal\"", "service_prefix = \"100.80.128.0/17\"\ndomain = \"NHS..internal\""},
			want: []string{
				`policy.toml:3:1: overlay: service_prefix 100.80.128.0/17 overlaps prefix 100.80.0.0/16`,
				`policy.toml:4:1: overlay: DNS name "nhs..internal": empty label`,
			}},
		{name: "missing overlay", replace: [2]string{"[overlay]\nprefix = \"100.80.0.0/16\"\nservice_prefix = \"100.81.0.0/16\"\ndomain = \"nhs.internal\"\n", "\n\n\n\n"},
			want: []string{`policy.toml: missing [overlay] table (prefix, service_prefix, domain)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := baseTOML
			if tt.replace[0] != "" {
				if !strings.Contains(text, tt.replace[0]) {
					t.Fatalf("replace: %q not in base", tt.replace[0])
				}
				text = strings.Replace(text, tt.replace[0], tt.replace[1], 1)
			}
			text += tt.add
			p, err := Parse("policy.toml", []byte(text))
			if err == nil {
				t.Fatalf("loaded without error (%d rules); want %q", len(p.Rules()), tt.want)
			}
			got := problems(err)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err.Error() != strings.Join(got, "\n") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestBaseLoads(t *testing.T) {
	p, err := Parse("policy.toml", []byte(baseTOML+okRule))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings()) != 0 {
		t.Errorf("warnings: %v", p.Warnings())
	}
}

func TestLoadFileErrors(t *testing.T) {
	_, err := Load("testdata/does-not-exist.toml")
	if got := problems(err); len(got) != 1 || !strings.HasPrefix(got[0], "testdata/does-not-exist.toml: open testdata/does-not-exist.toml:") {
		t.Errorf("missing file: %q", got)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "p.toml")
	if err := os.WriteFile(path, []byte(baseTOML+"[[rule]]\nname = \"r\"\nfrom = [\"group:nope\"]\nto = [\"pacs\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if got := problems(err); len(got) != 1 || got[0] != path+`:25:1: rule "r": unknown group "nope" (no identity is in it: declare it in groups = [...] to name it first)` {
		t.Errorf("errors name the path as given: %q", got)
	}
}

func TestWarnings(t *testing.T) {
	add := fmt.Sprintf(`[[identity]]
name = "bob"
key = %q
address = "100.80.1.11"
site = "leeds"

[[service]]
name = "ehr"
site = "leeds"
endpoints = ["127.0.0.11:443"]

[[site]]
name = "york"
key = %q
address = "100.80.0.2"

[[rule]]
name = "never"
from = ["alice", "site:york"]
to = ["pacs"]
ports = ["8443/tcp"]

[[rule]]
name = "half"
from = ["alice"]
to = ["pacs", "ehr"]
ports = ["443/tcp"]

[[rule]]
name = "shadowed-smb"
action = "deny"
from = ["alice"]
to = ["ehr"]
`, testKey(3), testKey(4))
	p, err := Parse("policy.toml", []byte(baseTOML+add))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range p.Warnings() {
		got = append(got, w.Error())
	}
	want := []string{
		`policy.toml:23:1: identity "bob": no rule lets it reach any service`,
		`policy.toml:29:1: service "ehr": no rule lets any identity reach it`,
		`policy.toml:41:1: rule "never": site:york has no identities, so this part of from matches nothing`,
		`policy.toml:43:1: rule "never": can never match: no service it names offers 8443/tcp`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// heapAfter runs f and returns how much the live heap grew (after a GC)
// and how long f took.
func heapAfter(f func()) (grew int64, took time.Duration) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	took = time.Since(start)
	runtime.ReadMemStats(&after) // no GC: what f left, garbage included
	return int64(after.HeapAlloc) - int64(before.HeapAlloc), took
}

// TestLoadBounded: what `check` does (load, compile, run the tests) on a
// 50,000-rule policy, and on a file with a 10 MB string, stays within
// generous bounds of memory, and the error for the huge value is short.
func TestLoadBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("large inputs")
	}
	rng := rand.New(rand.NewPCG(50000, 1))
	spec := genSpec{sites: 10, identities: 5000, lan: 50, groups: 100, services: 500, egress: 10, rules: 50000, windows: true, expiry: true, denies: true}
	text := []byte(genPolicy(rng, spec).text())
	var p *Policy
	var err error
	grew, took := heapAfter(func() {
		p, err = Parse("big.toml", text)
		if err == nil {
			p.RunTests()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("50,000 rules (%d KB): loaded in %v, heap grew %d MB", len(text)>>10, took, grew>>20)
	if grew > 1<<30 {
		t.Errorf("loading 50,000 rules grew the heap by %d MB", grew>>20)
	}

	for _, tc := range []struct{ name, text string }{
		{"rule name", baseTOML + "[[rule]]\nname = \"" + strings.Repeat("r", 10<<20) + "\"\nfrom = [\"*\"]\nto = [\"*\"]\n"},
		{"key", baseTOML + "[[rule]]\n" + strings.Repeat("k", 10<<20) + " = 1\n"},
		{"endpoint", baseTOML + "[[service]]\nname = \"x\"\nsite = \"leeds\"\nendpoints = [\"" + strings.Repeat("1", 10<<20) + "\"]\n"},
	} {
		var err error
		grew, took := heapAfter(func() { _, err = Parse("huge.toml", []byte(tc.text)) })
		t.Logf("10 MB %s: refused in %v, heap grew %d MB: %v", tc.name, took, grew>>20, err)
		if err == nil || len(err.Error()) > 400 {
			t.Errorf("10 MB %s: error of %d bytes", tc.name, len(fmt.Sprint(err)))
		}
		if grew > 512<<20 {
			t.Errorf("10 MB %s grew the heap by %d MB", tc.name, grew>>20)
		}
	}
}

// TestDeclaredGroups: a declared group may be named by rules before anyone
// is in it (with a warning); undeclared, it stays an error.
func TestDeclaredGroups(t *testing.T) {
	rule := "[[rule]]\nname = \"estates-print\"\nfrom = [\"group:estates\"]\nto = [\"pacs\"]\n"
	p, err := Parse("policy.toml", []byte("groups = [\"estates\", \"radiology\"]\n"+baseTOML+rule))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(p.Groups()); got != "[estates radiology]" {
		t.Errorf("Groups() = %s", got)
	}
	var warned []string
	for _, w := range p.Warnings() {
		warned = append(warned, w.Error())
	}
	if !slices.Contains(warned, `policy.toml:1:1: group "estates" has no members`) || slices.ContainsFunc(warned, func(s string) bool { return strings.Contains(s, `"radiology" has no members`) }) {
		t.Errorf("warnings: %q", warned)
	}
	if d := p.Decide(p.Identity("alice"), p.Service("pacs"), 443, ProtoTCP, time.Now()); d.Allowed() {
		t.Errorf("alice allowed by %s", d.Rule)
	}

	for _, tc := range []struct{ head, want string }{
		{"", `policy.toml:25:1: rule "estates-print": unknown group "estates" (no identity is in it: declare it in groups = [...] to name it first)`},
		{"groups = [\"estate\"]\n", `policy.toml:26:1: rule "estates-print": unknown group "estates" (did you mean "estate"?)`},
		{"groups = [\"a b\", \"x\", \"x\"]\n", "policy.toml:1:1: groups: group name \"a b\" has ' ' (use letters, digits, '.', '_', '-')\npolicy.toml:1:1: groups: group \"x\" declared twice"},
		{"groups = \"estates\"\n", `policy.toml:1:1: groups: groups must be an array of strings, not a string`},
	} {
		_, err := Parse("policy.toml", []byte(tc.head+baseTOML+rule))
		if got := strings.Join(problems(err), "\n"); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%q: got\n%s\nwant\n%s", tc.head, got, tc.want)
		}
	}
}

// TestTestsNeedAtForTimedRules: a [[test]] without `at` that a rule with a
// window or an expiry bears on is refused, so that it cannot pass or fail
// by the time of day; tests the timed rules do not touch need no `at`.
func TestTestsNeedAtForTimedRules(t *testing.T) {
	rules := "[[rule]]\nname = \"days\"\nfrom = [\"alice\"]\nto = [\"pacs\"]\nports = [\"443/tcp\"]\nwhen = \"mon-fri\"\n" +
		"[[rule]]\nname = \"locum\"\nfrom = [\"group:radiology\"]\nto = [\"*\"]\nports = [\"icmp\"]\nexpires = \"2099-01-01T00:00:00Z\"\n"
	for _, tc := range []struct{ test, want string }{
		{"to = \"pacs:443\"\nexpect = \"deny\"\n", `policy.toml:35:1: test 1 (alice -> pacs:443): the result depends on rule "days"'s time window; give the test an ` + "`at`"},
		{"to = \"pacs\"\nexpect = \"allow\"\n", `policy.toml:35:1: test 1 (alice -> pacs): the result depends on rule "days"'s time window; give the test an ` + "`at`"},
		{"to = \"pacs:icmp\"\nexpect = \"allow\"\n", `policy.toml:35:1: test 1 (alice -> pacs:icmp): the result depends on rule "locum"'s expiry; give the test an ` + "`at`"},
		{"to = \"pacs:443\"\nexpect = \"allow\"\nat = \"2026-03-02T09:30:00Z\"\n", ""},
		{"to = \"pacs:80\"\nexpect = \"deny\"\nreason = \"no-service\"\n", ""},
	} {
		text := baseTOML + rules + "[[test]]\nfrom = \"alice\"\n" + tc.test
		p, err := Parse("policy.toml", []byte(text))
		got := strings.Join(problems(err), "\n")
		if err == nil {
			got = ""
			for _, r := range p.RunTests() {
				if !r.Passed {
					got = r.Problem.Error()
				}
			}
		}
		if got != tc.want {
			t.Errorf("%q:\ngot  %s\nwant %s", tc.test, got, tc.want)
		}
	}
}
