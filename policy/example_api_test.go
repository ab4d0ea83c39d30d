package policy_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// A small trust: one site, a radiologist's laptop, and PACS, which
// radiology may reach on weekdays in working hours.
const smallPolicy = `
[overlay]
prefix = "100.80.0.0/16"
service_prefix = "100.81.0.0/16"
domain = "nhs.internal"

[[site]]
name = "leeds"
key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
address = "100.80.0.1"

[[identity]]
name = "dr-khan-laptop"
key = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
address = "100.80.1.10"
site = "leeds"
groups = ["radiology"]

[[service]]
name = "pacs"
site = "leeds"
endpoints = ["10.20.0.5:443"]

[[rule]]
name = "radiology-reads-pacs"
from = ["group:radiology"]
to = ["pacs"]
when = "mon-fri 07:00-19:00"
`

func ExampleLoad() {
	p, err := policy.Load("../configs/example/policy.toml")
	if err != nil {
		fmt.Println(err) // every problem, each with file:line
		return
	}
	for _, s := range p.Sites() {
		fmt.Println(s.Name, s.Address)
	}
	// Output:
	// leeds 100.80.0.1
	// york 100.80.0.2
}

func ExampleParse_errors() {
	_, err := policy.Parse("policy.toml", []byte("[[site]]\nname = \"leeds\"\nkey = \"AAAA\"\n"))
	var le *policy.LoadError
	if errors.As(err, &le) {
		for _, p := range le.Problems {
			fmt.Println(p)
		}
	}
	// Output:
	// policy.toml: missing [overlay] table (prefix, service_prefix, domain)
	// policy.toml:1:1: site "leeds": missing address (the site gateway's overlay address)
	// policy.toml:3:1: site "leeds": key is not a WireGuard key (32 bytes, base64): "AAAA"
}

func ExamplePolicy_Decide() {
	p, err := policy.Parse("policy.toml", []byte(smallPolicy))
	if err != nil {
		fmt.Println(err)
		return
	}
	khan := p.Identity("dr-khan-laptop")
	pacs := p.Service("pacs")
	tuesday := time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)
	sunday := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

	d := p.Decide(khan, pacs, 443, policy.ProtoTCP, tuesday)
	fmt.Println(d.Verdict, d.Rule)
	d = p.Decide(khan, pacs, 443, policy.ProtoTCP, sunday)
	fmt.Println(d.Verdict, d.Reason)
	d = p.Decide(khan, pacs, 22, policy.ProtoTCP, tuesday)
	fmt.Println(d.Verdict, d.Reason) // no service offers port 22
	// Output:
	// allow radiology-reads-pacs
	// deny outside-time-window
	// deny no-service
}

func ExamplePolicy_Explain() {
	p, err := policy.Parse("policy.toml", []byte(smallPolicy))
	if err != nil {
		fmt.Println(err)
		return
	}
	sunday := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	_, why := p.Explain(p.Identity("dr-khan-laptop"), p.Service("pacs"), 443, policy.ProtoTCP, sunday)
	fmt.Println(why)
	// Output:
	// deny: rule "radiology-reads-pacs" lets group:radiology reach pacs on 443/tcp only mon-fri 07:00-19:00, and it is Sun 10:00 UTC there
}
