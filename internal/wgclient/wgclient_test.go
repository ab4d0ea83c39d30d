package wgclient

import "testing"

func TestIsPortUnreachable(t *testing.T) {
	v4 := make([]byte, 28)
	v4[0], v4[9], v4[20], v4[21] = 0x45, 1, 3, 3
	v6 := make([]byte, 48)
	v6[0], v6[6], v6[40], v6[41] = 0x60, 58, 1, 4
	echo := make([]byte, 28)
	echo[0], echo[9], echo[20] = 0x45, 1, 0
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"v4", v4, true}, {"v6", v6, true}, {"echo reply", echo, false}, {"empty", nil, false},
	} {
		if got := isPortUnreachable(tc.pkt); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNewNeedsAddresses(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without addresses succeeded")
	}
}
