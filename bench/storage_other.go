//go:build !linux

package bench

// volatileStorage tells nothing outside Linux.
func volatileStorage(string) string { return "" }
