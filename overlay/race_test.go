//go:build race

package overlay_test

// raceEnabled: the race detector slows the data path about tenfold, which
// load tests cannot tell from a fault.
const raceEnabled = true
