package enroll

import (
	"strings"
	"testing"

	"github.com/wardgate/wardgate/internal/wgkey"
)

func TestClientConfig(t *testing.T) {
	text := smallPolicy + `
[[identity]]
name = "desk"
key = "vc0wEK2eokB1cdNrHttpSsnP3lZykrygD7x2qU3//m4="
address = "10.9.0.4"
site = "a"
groups = ["g"]

[[service]]
name = "web"
site = "a"
endpoints = ["192.168.5.10:443", "192.168.5.0/24:8000-8010", "127.0.0.1:80"]

[[service]]
name = "db"
site = "b"
endpoints = ["192.168.9.10:5432"]

[[service]]
name = "other"
site = "a"
endpoints = ["172.16.0.1:443"]

[[rule]]
name = "g-web"
from = ["group:g"]
to = ["web", "db"]
`
	p := mustParse(t, text)
	priv, err := wgkey.NewPrivate()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ClientFor(p, "desk", priv)
	if err != nil {
		t.Fatal(err)
	}
	want := "# wardgate client config for desk (site a)\n[Interface]\nPrivateKey = " + priv.Base64() + `
Address = 10.9.0.4/32
DNS = 10.9.0.1

[Peer]
# the a gateway
PublicKey = LqjzRepy5ts7yPfqc1x2/RKn+vzATGXXQQHpg7DLsTU=
# Endpoint = fill in HOST:PORT of the gateway (its [[site]] has no endpoint)
AllowedIPs = 10.9.0.0/24, 10.10.0.0/24, 192.168.5.0/24, 192.168.9.10/32
PersistentKeepalive = 25
`
	if got := c.Render(); got != want {
		t.Fatalf("Render:\n%s\nwant\n%s", got, want)
	}
	c.PrivateKey, c.Endpoint = wgkey.Private{}, "gw.example:51820"
	got := c.Render()
	if strings.Contains(got, "\nPrivateKey") || !strings.Contains(got, "# PrivateKey = fill in") || !strings.Contains(got, "\nEndpoint = gw.example:51820\n") {
		t.Fatalf("Render without a private key:\n%s", got)
	}
}
