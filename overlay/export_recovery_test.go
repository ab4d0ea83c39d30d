package overlay

import "gvisor.dev/gvisor/pkg/tcpip"

// SetTCPRACK turns gVisor's RACK loss detection on or off for stacks
// created afterwards and returns the previous setting (comparisons only).
func SetTCPRACK(on bool) bool {
	old := tcpRecovery != 0
	tcpRecovery = 0
	if on {
		tcpRecovery = tcpip.TCPRACKLossDetection
	}
	return old
}
